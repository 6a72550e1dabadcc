"""Shared pytest fixtures: each area keeps its fixtures in its own plugin module."""

pytest_plugins = ["tests.fixtures_aws", "tests.fixtures_db", "tests.fixtures_slack"]
