"""The Hugging Face Hub: listings, catalog, licences, variants, recommendations, errors and retries."""
