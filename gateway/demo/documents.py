"""The demo's dataset and template documents, as their owners and analysts would write them."""

from __future__ import annotations

ENTERPRISE_REGISTRY = """\
id: market.enterprise_registry
title: Enterprise registry
description: Every enterprise registered with the market regulator (市场监管局).
provider: market
source: {format: parquet, path: data/market/enterprise_registry.parquet}
share_class: conditional
classification: general
update_cycle: daily
columns:
  - {name: enterprise_id, type: VARCHAR, sensitivity: identifier}
  - {name: district, type: VARCHAR, sensitivity: public}
  - {name: industry, type: VARCHAR, sensitivity: public}
  - {name: established_year, type: INTEGER, sensitivity: public}
  - {name: status, type: VARCHAR, sensitivity: public}
  - {name: registered_capital, type: DOUBLE, sensitivity: sensitive}
disclosure: {min_group_size: 10}
"""

TAX_FILINGS = """\
id: tax.filings
title: Tax filings
description: Annual filings per enterprise (税务局).
provider: tax
source: {format: parquet, path: data/tax/filings.parquet}
share_class: conditional
classification: important
update_cycle: monthly
columns:
  - {name: enterprise_id, type: VARCHAR, sensitivity: identifier}
  - {name: year, type: INTEGER, sensitivity: public}
  - {name: revenue, type: DOUBLE, sensitivity: sensitive}
  - {name: tax_paid, type: DOUBLE, sensitivity: sensitive}
disclosure: {min_group_size: 10}
"""

RESIDENTS = """\
id: civil.residents
title: Registered residents
description: Residents registered with civil affairs (民政局); personal data, not shared.
provider: civil
source: {format: parquet, path: data/civil/residents.parquet}
share_class: none
classification: important
update_cycle: daily
privacy_unit: person_id
columns:
  - {name: person_id, type: VARCHAR, sensitivity: identifier}
  - name: district
    type: VARCHAR
    sensitivity: public
    values: [chaoyang, haidian, fengtai, dongcheng, xicheng, tongzhou, shunyi, changping,
             daxing, fangshan, mentougou, huairou, pinggu, miyun, yanqing, shijingshan]
  - {name: birth_year, type: INTEGER, sensitivity: quasi_identifier}
  - {name: sex, type: VARCHAR, sensitivity: quasi_identifier}
  - {name: household_size, type: INTEGER, sensitivity: sensitive}
  - {name: monthly_income, type: BIGINT, sensitivity: sensitive}
disclosure: {min_group_size: 20}
verify: {max_keys_per_request: 20, max_keys_per_day: 200, sweep_min_keys: 30,
         sweep_max_match_rate: 0.2}
"""
# The demo's residents also answer `dp` templates: the civil owner sets the privacy budget.
RESIDENTS_PRIVACY = """\
privacy:
  budget: {rho_per_department: 0.5, rho_total: 2, refresh: monthly}
"""

NO_FILING_TEMPLATE = """\
id: enterprises-without-tax-filing
version: 1
kind: aggregate
title: Registered enterprises with no tax filing in a year, by district
datasets: [market.enterprise_registry, tax.filings]
parameters:
  year: {type: integer, min: 2018, max: 2025}
  industry: {type: string, values_from: market.enterprise_registry.industry}
sql: |
  SELECT r.district, COUNT(*) AS enterprises
  FROM market.enterprise_registry AS r
  WHERE r.industry = :industry
    AND r.status = 'active'
    AND NOT EXISTS (SELECT 1 FROM tax.filings AS t
                    WHERE t.enterprise_id = r.enterprise_id AND t.year = :year)
  GROUP BY r.district
output: {count_column: enterprises}
"""

RESIDENTS_TEMPLATE = """\
id: residents-by-district
version: 1
kind: aggregate
title: Residents born in or after a year, by district
datasets: [civil.residents]
parameters:
  born_since: {type: integer, min: 1930, max: 2024}
sql: |
  SELECT p.district, COUNT(*) AS residents
  FROM civil.residents AS p
  WHERE p.birth_year >= :born_since
  GROUP BY p.district
output: {count_column: residents}
"""

LICENCES = """\
id: market.licences
title: Business licences
description: The business licence of every registered enterprise (营业执照), as published.
provider: market
resource_code: 11000000-MKT-0002
source: {format: parquet, path: data/market/licences.parquet}
share_class: unconditional
share_conditions: none; licences are public records
open_class: open
classification: general
update_cycle: daily
keywords: [licence, enterprise]
columns:
  - {name: enterprise_id, type: VARCHAR, sensitivity: identifier, personal: false,
     description: unified social credit code of a legal entity}
  - {name: district, type: VARCHAR, sensitivity: public, personal: false}
  - {name: licence_status, type: VARCHAR, sensitivity: public, personal: false}
  - {name: valid_until, type: INTEGER, sensitivity: public, personal: false}
quality:
  rules:
    - {rule: required, columns: [enterprise_id, district], severity: must}
    - {rule: key_unique, columns: [enterprise_id], severity: must}
    - {rule: allowed_values, column: licence_status, values: [valid, expired, revoked],
       severity: should}
    - {rule: max_staleness, hours: 48, severity: should}
"""

ABNORMAL_TAXPAYERS = """\
id: tax.abnormal_taxpayers
title: Abnormal taxpayers
description: Enterprises listed as abnormal taxpayers (非正常户) per year, as published.
provider: tax
resource_code: 11000000-TAX-0007
source: {format: parquet, path: data/tax/abnormal_taxpayers.parquet}
share_class: unconditional
open_class: open
classification: general
update_cycle: monthly
columns:
  - {name: enterprise_id, type: VARCHAR, sensitivity: identifier, personal: false}
  - {name: year, type: INTEGER, sensitivity: public, personal: false}
"""

LIST_TEMPLATE = """\
id: licensed-abnormal-taxpayers
version: 1
kind: list
title: Enterprises with a valid licence listed as abnormal taxpayers, in a district and year
datasets: [market.licences, tax.abnormal_taxpayers]
parameters:
  district: {type: string, values_from: market.licences.district}
  year: {type: integer, min: 2018, max: 2025}
sql: |
  SELECT l.enterprise_id, l.district
  FROM market.licences AS l
  WHERE l.licence_status = 'valid' AND l.district = :district
    AND EXISTS (SELECT 1 FROM tax.abnormal_taxpayers AS a
                WHERE a.enterprise_id = l.enterprise_id AND a.year = :year)
  ORDER BY l.enterprise_id
"""

VERIFY_TEMPLATE = """\
id: resident-of-district
version: 1
kind: verify
title: Is this person a registered resident of the district? (核验)
datasets: [civil.residents]
parameters:
  district: {type: string, values_from: civil.residents.district}
verify:
  key: {name: person_id, type: string, pattern: "P[0-9]{9}", max_length: 10}
  answer: match
sql: |
  SELECT 1 FROM civil.residents AS p
  WHERE p.person_id = :person_id AND p.district = :district
"""

DP_TEMPLATE = """\
id: residents-by-district-dp
version: 1
kind: dp
title: Residents and their mean monthly income by district (differential privacy)
datasets: [civil.residents]
parameters:
  born_since: {type: integer, min: 1930, max: 2024}
dp:
  bounds: {rows_per_unit: 1}
  filters: [{column: birth_year, op: ">=", parameter: born_since}]
  group_by: {columns: [district], keys: public}
  measures:
    - {name: residents, kind: count}
    - {name: mean_income, kind: mean, column: monthly_income, lower: 0, upper: 50000}
  cost: {rho: 0.1}
"""

# An aggregate over open data (开放): its released result is what the market owner publishes.
OPEN_TEMPLATE = """\
id: licences-by-district
version: 1
kind: aggregate
title: Business licences by district, in a licence status
datasets: [market.licences]
parameters:
  status: {type: string, values: [valid, expired, revoked]}
sql: |
  SELECT l.district, COUNT(*) AS licences
  FROM market.licences AS l
  WHERE l.licence_status = :status
  GROUP BY l.district
output: {count_column: licences}
"""

# A comparison (比对) across market and tax: licensed enterprises the tax bureau lists as
# abnormal taxpayers (they stopped filing). Each is a finding for the market regulator, who
# reviews the licence; the requesting department sees counts by type, district and state.
COMPARE_TEMPLATE = """\
id: licensed-but-not-filing
version: 1
kind: list
title: Licensed enterprises listed as abnormal taxpayers (registered, no tax filing)
datasets: [market.licences, tax.abnormal_taxpayers]
parameters:
  year: {type: integer, min: 2018, max: 2025}
sql: |
  SELECT l.enterprise_id, l.district
  FROM market.licences AS l
  WHERE l.licence_status = 'valid'
    AND EXISTS (SELECT 1 FROM tax.abnormal_taxpayers AS a
                WHERE a.enterprise_id = l.enterprise_id AND a.year = :year)
findings:
  type: registered_no_tax_filing
  key: enterprise_id
  district: district
  route_to: market.licences
"""
