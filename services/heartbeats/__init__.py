"""HeartbeatService: workers and their liveness."""
