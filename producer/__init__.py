"""Control side of hotreload: settings, git sync, change detection, enqueueing, HTTP server, CLI."""
