"""SchedulerService: deployments, flow runs and their dispatch to workers."""
