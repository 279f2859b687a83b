"""The agencies' HTTP API: FastAPI on uvicorn, its OpenAPI document made from the same pydantic
models as its contracts. A service beside the gateway: it reads and writes the record (Postgres)
through the adapters, and takes the gateway's access tokens (``kernel.tokens``)."""
