"""The one exception of the user's commands: what stopped the command, as one line for the user.

raise ToolError("no worker is running for instance 'web-1'")   # hotreload: ... , exit 1
"""


class ToolError(Exception):
    """What stopped the command, as one line for the user."""
