"""Cloud side: the ingester and the API."""
