from shiftboss.services.db import run_migrations_online
from shiftboss.services.heartbeats.models import HeartbeatsBase

run_migrations_online(HeartbeatsBase.metadata)
