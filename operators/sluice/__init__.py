"""Sluice: Kubernetes-native ML pipelines on Apache Airflow 3.

Importing the package stays cheap and Airflow-free; operators live in ``sluice.operators``.
"""

__version__ = "0.1.0"
