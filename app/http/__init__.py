"""The HTTP face: endpoints, form parsing, response formats, server-sent events, middleware, error envelope."""
