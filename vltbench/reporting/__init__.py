"""Reporting: leaderboard tables, paired differences, regression checks, figures and the HTML page."""
