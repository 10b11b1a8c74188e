"""Cluster addons kubeprem deploys after the nodes are Ready.

``dns``: cluster DNS (CoreDNS, or the lab's dnsmasq server fed by
``cluster_dns``, the controller script that runs in its pods). ``smoke``:
the smoke workload that proves pods reach each other across nodes and find
Services by name. ``kubectl``: their server-side apply over SSH. Called by
the apply workflow's last two phases (``cluster-dns``, ``smoke``).
"""
