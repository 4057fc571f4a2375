"""Execution side of hotreload: the job contract, the shell runner, the policies, the worker."""
