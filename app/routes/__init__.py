"""Thin HTTP and WebSocket handlers, one module per resource."""
