"""Constants shared by the sandbox tests (a uniquely named module, unlike conftest)."""

EXAMPLE_SQL = """\
SELECT r.district, COUNT(*) AS enterprises
FROM market.enterprise_registry AS r
WHERE r.industry = :industry
  AND NOT EXISTS (SELECT 1 FROM tax.filings AS t
                  WHERE t.enterprise_id = r.enterprise_id AND t.year = :year)
GROUP BY r.district
"""
REGISTRY = "market.enterprise_registry"
FILINGS = "tax.filings"
