"""Operations: live metrics from calls, KPI reports from stored calls, fairness, A/B tests."""
