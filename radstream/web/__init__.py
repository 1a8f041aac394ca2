"""The researchers' web app (``radstream web``): report search, cohorts, retrieval, steward pages."""
