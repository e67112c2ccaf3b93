"""The API's request and response bodies: the one description `/openapi.json` is generated from."""
