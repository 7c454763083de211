"""Plumbing every REST broker shares: the pooled HTTP client, URL checks, HTTP errors mapped to the error tree."""
