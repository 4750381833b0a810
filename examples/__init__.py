# Makes `python -m uvicorn examples.demo_app:app` work from the repository root.
