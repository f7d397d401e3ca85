SELECT ceil(COUNT(*)::decimal / {concurrency}) FROM task_instance WHERE state IN ('queued', 'running') AND queue IN ({queues}) AND executor IS DISTINCT FROM 'KubernetesExecutor'
