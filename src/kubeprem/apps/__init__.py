"""Stateful applications as manifest builders, and the audit of manifests.

base        typed building blocks (containers, probes, pods) -> API dicts; passwords
values      values files: YAML with file:line errors, one pydantic model per app
redis       Redis: primary + replicas + Sentinels + primary proxy, or Redis Cluster
postgresql  PostgreSQL with Patroni (Kubernetes API as its store), backup Job
storage     local PersistentVolumes and the default StorageClass 'local'
catalog     APPS: name -> values model, builder, Secret
workflow    render, preflight, deploy (dry-run, ordered apply, rollout wait), status, destroy
audit       ``kubeprem audit``: the stateful-readiness rules
"""
