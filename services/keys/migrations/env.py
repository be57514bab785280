from shiftboss.services.db import run_migrations_online
from shiftboss.services.keys.models import KeysBase

run_migrations_online(KeysBase.metadata)
