CREATE INDEX CONCURRENTLY IF NOT EXISTS sluice_ti_pool_load ON task_instance (queue, executor) WITH (deduplicate_items = off) WHERE state IN ('queued', 'running')
