"""`facestore serve`: the prediction service over HTTP (Starlette on uvicorn).

inputs.py reads a request's crops within the limits; batcher.py runs concurrent
requests' faces through the model together; follower.py keeps the current model
loaded and follows each new one; telemetry.py counts for /metrics; openapi.py is the
published schema; app.py puts them together as routes. Nothing is imported here, so
`facestore --help` stays fast.
"""
