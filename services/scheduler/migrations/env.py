from shiftboss.services.db import run_migrations_online
from shiftboss.services.scheduler.models import SchedulerBase

run_migrations_online(SchedulerBase.metadata)
