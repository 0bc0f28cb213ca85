"""Run the router service: ``python -m services.router``."""

from services.router.app import build
from shared.service import run

run(build)
