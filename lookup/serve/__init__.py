"""The HTTP service: FastAPI app and routers over the homolog service, the server runner, and the web page."""
