from shiftboss.services.db import run_migrations_online
from shiftboss.services.pools.models import PoolsBase

run_migrations_online(PoolsBase.metadata)
