"""Run the registry service: ``python -m services.registry``."""

from services.registry.app import build
from shared.service import run

run(build)
