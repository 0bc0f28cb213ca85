"""Run the metering service: ``python -m services.metering``."""

from services.metering.app import build
from shared.service import run

run(build)
