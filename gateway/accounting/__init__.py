"""Money: prices, budget periods, admission (rate limits + reservations), ledger, reports."""
