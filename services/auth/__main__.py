from services.cli import run_alone

run_alone("auth")
