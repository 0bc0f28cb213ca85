"""Run the limiter service: ``python -m services.limiter``."""

from services.limiter.app import build
from shared.service import run

run(build)
