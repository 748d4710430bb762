"""Proactive agents: APScheduler jobs and events that start runs with no inbound message.

Agent definitions already declare `schedule` and `event` triggers; the jobs that fire them
arrive with the scheduler work.
"""
