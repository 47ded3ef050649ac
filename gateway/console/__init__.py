"""The web console at `/console`: server-rendered pages (Jinja2 + htmx) for the four roles.

`gateway.console.routes.mount(app)` adds its routes and static files (every asset vendored in
the package). This root imports nothing, so the CLI's `console-link` stays light. See
README.md in this directory for what it owns and may import.
"""
