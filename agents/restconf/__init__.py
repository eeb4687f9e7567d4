"""RESTCONF (RFC 8040) face of an agent: the same datastore, NACM and audit as NETCONF.

Layout: `errors` (the RFC 8040 error document), `uri` (data resource paths), `query`
(depth, fields, content), `protocol` (request → response, no I/O), `server` (HTTPS: uvicorn
with an ASGI adapter).
"""
