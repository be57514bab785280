"""PoolService: work pools and their work queues."""
