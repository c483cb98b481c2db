//! Deterministic, realistic-looking payload fixtures for tests and benchmarks.
//!
//! Everything here is generated from a small seeded PRNG (SplitMix64), so the
//! same seed always yields byte-identical JSON. The data is meant to look like
//! real event-sourcing payloads (repeated keys and vocabulary, but varied ids,
//! amounts and timestamps), so that compression ratios measured on it are
//! representative rather than flattering:
//!
//! * [`small_event`] — a single domain event of roughly 300 bytes of compact
//!   JSON (`OrderLineAdded` or `PaymentCaptured`).
//! * [`ledger_snapshot`] — a large aggregate snapshot of a business current
//!   account: header fields plus thousands of booked ledger entries, grown until
//!   the compact JSON reaches a requested size.
//! * [`snapshot_1_5_mb`] / [`snapshot_10_mb`] — fixed-seed convenience wrappers
//!   around [`ledger_snapshot`] for [`SNAPSHOT_1_5_MB`] and [`SNAPSHOT_10_MB`].
//!
//! Sizes always refer to `serde_json::to_vec(&value).len()` (compact JSON).

use std::collections::VecDeque;

use serde_json::{json, Map, Value};

/// Target compact-JSON size, in bytes, of [`snapshot_1_5_mb`].
pub const SNAPSHOT_1_5_MB: usize = 1_500_000;

/// Target compact-JSON size, in bytes, of [`snapshot_10_mb`].
pub const SNAPSHOT_10_MB: usize = 10_000_000;

/// Seed used by [`snapshot_1_5_mb`].
const SEED_1_5_MB: u64 = 0x00C0_FFEE_0015;
/// Seed used by [`snapshot_10_mb`].
const SEED_10_MB: u64 = 0x00C0_FFEE_0100;

/// 2024-01-02T00:00:00Z, the base of every generated timestamp.
const BASE_EPOCH_SECS: i64 = 1_704_153_600;
const SECS_PER_DAY: i64 = 86_400;

/// A realistic domain event of roughly 300 bytes of compact JSON.
///
/// Depending on the seed this is either an `OrderLineAdded` or a
/// `PaymentCaptured` event with a v4-layout UUID, an RFC 3339 timestamp with
/// milliseconds, money amounts as decimal strings plus an ISO 4217 currency,
/// a SKU, a product name, a quantity and a customer id. The compact JSON is
/// always between 250 and 350 bytes. The same seed always yields the same value.
pub fn small_event(seed: u64) -> Value {
    let mut rng = Rng::new(seed);
    let event_id = rng.uuid_v4();
    let secs = BASE_EPOCH_SECS + rng.range_i64(0, 400 * SECS_PER_DAY);
    let millis = rng.range_i64(0, 999);
    let occurred_at = rfc3339_millis(secs, millis);
    let year = civil_from_days(secs.div_euclid(SECS_PER_DAY)).0;
    let order_id = format!("ORD-{year}-{:06}", rng.range(1, 999_999));
    let customer_id = format!("CUST-{:07}", rng.range(1, 9_999_999));
    let product = rng.pick(PRODUCTS).copied().unwrap_or(PRODUCTS_FALLBACK);
    let quantity = if rng.chance(70) { 1 } else { rng.range(2, 6) };
    let unit_price = retail_price(&mut rng, product.min_minor, product.max_minor);
    let line_total = unit_price.saturating_mul(i64::try_from(quantity).unwrap_or(1));
    let currency = if rng.chance(85) { "EUR" } else { "CHF" };
    let sku = format!("{}-{:05}", product.sku_prefix, rng.range(100, 99_999));

    if rng.chance(50) {
        json!({
            "event_type": "OrderLineAdded",
            "event_id": event_id,
            "occurred_at": occurred_at,
            "order_id": order_id,
            "customer_id": customer_id,
            "sku": sku,
            "product_name": product.name,
            "quantity": quantity,
            "unit_price": money(unit_price),
            "line_total": money(line_total),
            "currency": currency,
        })
    } else {
        let provider = rng.word(&["stripe", "adyen", "paypal", "mollie", "klarna"]);
        let method = rng.word(&["card", "sepa_debit", "apple_pay", "ideal", "giropay"]);
        json!({
            "event_type": "PaymentCaptured",
            "event_id": event_id,
            "occurred_at": occurred_at,
            "order_id": order_id,
            "customer_id": customer_id,
            "payment_id": format!("pay_{}", rng.hex(16)),
            "provider": provider,
            "method": method,
            "amount": money(line_total),
            "currency": currency,
            "sku": sku,
        })
    }
}

/// A large ledger-account aggregate snapshot of at least `target_bytes` bytes of
/// compact JSON.
///
/// The snapshot models a business current account: aggregate id, IBAN/BIC,
/// owner, opening balance, running totals and an `entries` array of booked
/// ledger entries (card payments, incoming and outgoing SEPA transfers, direct
/// debits, payroll, tax, fees, interest). Each entry repeats the same keys
/// (`entry_id`, `sequence`, `posted_at`, `value_date`, `account`,
/// `counterparty`, `amount`, `currency`, `balance_after`, `memo`, `reference`,
/// `tags`, ...) with values drawn from plausible vocabularies, a counterparty
/// pool with valid-checksum IBANs, and varied amounts, ids and timestamps.
/// `balance`, `total_credits` and `total_debits` are consistent with the entries,
/// and every entry's `balance_after` is the running balance.
///
/// Entries are added one at a time (at least one) and generation stops at the
/// first entry whose addition makes the compact JSON reach `target_bytes`, so
/// the result exceeds the target by less than one entry (well under 2 KiB).
/// The same `(target_bytes, seed)` always yields the same value.
pub fn ledger_snapshot(target_bytes: usize, seed: u64) -> Value {
    let mut ledger = Ledger::new(seed);
    let mut entries: Vec<Value> = Vec::new();
    let mut entries_bytes: usize = 0;
    loop {
        let entry = ledger.next_entry();
        entries_bytes = entries_bytes.saturating_add(json_len(&entry));
        entries.push(entry);
        // `"entries":[]` grows by each entry plus one comma between entries.
        let commas = entries.len().saturating_sub(1);
        let header_bytes = json_len(&ledger.header(Vec::new()));
        let total = header_bytes
            .saturating_add(entries_bytes)
            .saturating_add(commas);
        if total >= target_bytes {
            break;
        }
    }
    ledger.header(entries)
}

/// The ~1.5 MB ledger snapshot: [`ledger_snapshot`] with [`SNAPSHOT_1_5_MB`]
/// and a fixed seed.
pub fn snapshot_1_5_mb() -> Value {
    ledger_snapshot(SNAPSHOT_1_5_MB, SEED_1_5_MB)
}

/// The ~10 MB ledger snapshot: [`ledger_snapshot`] with [`SNAPSHOT_10_MB`] and
/// a fixed seed.
pub fn snapshot_10_mb() -> Value {
    ledger_snapshot(SNAPSHOT_10_MB, SEED_10_MB)
}

// ---------------------------------------------------------------------------
// Size accounting
// ---------------------------------------------------------------------------

/// An `io::Write` sink that only counts bytes.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compact JSON length of `value` without allocating the output.
fn json_len(value: &Value) -> usize {
    let mut counter = ByteCounter(0);
    // Serializing a `Value` into a counting sink cannot fail.
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------------------
// PRNG and formatting helpers
// ---------------------------------------------------------------------------

/// SplitMix64: tiny, fast, well-distributed and fully deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `0` when `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        u64::try_from(wide >> 64).unwrap_or(0)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo).saturating_add(1))
    }

    /// Uniform in `lo..=hi` for signed values.
    fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = u64::try_from(hi.saturating_sub(lo)).unwrap_or(0);
        let offset = i64::try_from(self.range(0, span)).unwrap_or(0);
        lo.saturating_add(offset)
    }

    /// `true` with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn index(&mut self, len: usize) -> usize {
        let n = u64::try_from(len).unwrap_or(u64::MAX);
        usize::try_from(self.below(n)).unwrap_or(0)
    }

    /// An index in `0..len` skewed towards small values (min of two draws), so a
    /// few items of a pool are frequent and the tail is rare, like real payees.
    fn skewed_index(&mut self, len: usize) -> usize {
        let a = self.index(len);
        let b = self.index(len);
        a.min(b)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let i = self.index(items.len());
        items.get(i)
    }

    fn word(&mut self, items: &[&'static str]) -> &'static str {
        self.pick(items).copied().unwrap_or("")
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| {
                char::from_digit(u32::try_from(self.below(10)).unwrap_or(0), 10).unwrap_or('0')
            })
            .collect()
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| {
                char::from_digit(u32::try_from(self.below(16)).unwrap_or(0), 16).unwrap_or('0')
            })
            .collect()
    }

    fn upper_hex(&mut self, n: usize) -> String {
        self.hex(n).to_ascii_uppercase()
    }

    /// A random UUID in the RFC 4122 version-4 layout, lowercase hex.
    fn uuid_v4(&mut self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000; // version 4
        let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000; // variant 10
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}

/// Formats integer minor units (cents) as a decimal string, e.g. `-4217` →
/// `"-42.17"`.
fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A retail-looking price in minor units: skewed towards the low end of the
/// range and often ending in .99/.95/.49/.00.
fn retail_price(rng: &mut Rng, min_minor: i64, max_minor: i64) -> i64 {
    let a = rng.range_i64(min_minor, max_minor);
    let b = rng.range_i64(min_minor, max_minor);
    let raw = a.min(b);
    let euros = raw.div_euclid(100);
    let cents = match rng.below(10) {
        0..=2 => 99,
        3..=4 => 95,
        5 => 49,
        6 => 0,
        _ => raw.rem_euclid(100),
    };
    (euros * 100 + cents).max(min_minor)
}

/// Days since 1970-01-01 → proleptic Gregorian `(year, month, day)`
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` of a Unix timestamp.
fn date_string(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 UTC timestamp with second precision, e.g. `2024-03-05T14:22:09Z`.
fn rfc3339(secs: i64) -> String {
    let tod = secs.rem_euclid(SECS_PER_DAY);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date_string(secs),
        tod / 3_600,
        (tod / 60) % 60,
        tod % 60
    )
}

/// RFC 3339 UTC timestamp with millisecond precision.
fn rfc3339_millis(secs: i64, millis: i64) -> String {
    let tod = secs.rem_euclid(SECS_PER_DAY);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        date_string(secs),
        tod / 3_600,
        (tod / 60) % 60,
        tod % 60,
        millis.rem_euclid(1_000)
    )
}

/// Day of week, 0 = Monday … 6 = Sunday.
fn weekday(secs: i64) -> i64 {
    // 1970-01-01 was a Thursday (index 3).
    (secs.div_euclid(SECS_PER_DAY) + 3).rem_euclid(7)
}

/// Computes the two IBAN check digits for `country` + `bban` (ISO 13616 mod 97).
fn iban_with_check(country: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{country}00");
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        if let Some(v) = c.to_digit(36) {
            rem = if v < 10 {
                (rem * 10 + v) % 97
            } else {
                (rem * 100 + v) % 97
            };
        }
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

// ---------------------------------------------------------------------------
// Vocabularies
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Product {
    name: &'static str,
    sku_prefix: &'static str,
    min_minor: i64,
    max_minor: i64,
}

const PRODUCTS_FALLBACK: Product = Product {
    name: "Espresso cups, set of 4",
    sku_prefix: "KT-ESP",
    min_minor: 1_295,
    max_minor: 2_495,
};

#[rustfmt::skip]
const PRODUCTS: &[Product] = &[
    PRODUCTS_FALLBACK,
    Product { name: "Stainless steel kettle 1.7 l", sku_prefix: "KT-KET", min_minor: 2_999, max_minor: 8_999 },
    Product { name: "Organic coffee beans 1 kg", sku_prefix: "FD-COF", min_minor: 1_490, max_minor: 3_290 },
    Product { name: "Merino wool sweater", sku_prefix: "AP-SWT", min_minor: 5_990, max_minor: 14_900 },
    Product { name: "Trail running shoes", sku_prefix: "SP-RUN", min_minor: 8_995, max_minor: 17_995 },
    Product { name: "USB-C charging cable 2 m", sku_prefix: "EL-CBL", min_minor: 799, max_minor: 1_999 },
    Product { name: "Noise-cancelling headphones", sku_prefix: "EL-HPH", min_minor: 12_900, max_minor: 34_900 },
    Product { name: "Hardcover notebook A5", sku_prefix: "OF-NTB", min_minor: 695, max_minor: 1_895 },
    Product { name: "Paperback: Clean Architecture", sku_prefix: "BK-PAP", min_minor: 2_499, max_minor: 4_299 },
    Product { name: "Cast iron skillet 28 cm", sku_prefix: "KT-SKL", min_minor: 3_490, max_minor: 6_990 },
    Product { name: "LED desk lamp, dimmable", sku_prefix: "HM-LMP", min_minor: 2_490, max_minor: 7_990 },
    Product { name: "Yoga mat 6 mm", sku_prefix: "SP-YOG", min_minor: 1_999, max_minor: 4_999 },
    Product { name: "Linen bed sheet 160x200", sku_prefix: "HM-BED", min_minor: 4_900, max_minor: 11_900 },
    Product { name: "Green tea sencha 250 g", sku_prefix: "FD-TEA", min_minor: 890, max_minor: 1_990 },
];

#[rustfmt::skip]
const SURNAMES: &[&str] = &[
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann",
    "Braun", "Hartmann", "Lange", "Schmitt", "Werner", "Krause", "Lehmann", "Köhler", "Herrmann",
    "König", "Walter", "Huber", "Kaiser", "Fuchs", "Peters", "Lang", "Vogel", "Jansen", "de Vries",
    "Rossi", "Dubois", "Novak", "Andersson", "García", "Peeters", "Gruber", "Bauer",
];

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "Anna", "Lukas", "Sophie", "Jonas", "Marie", "Felix", "Laura", "Paul", "Lea", "Maximilian",
    "Julia", "Leon", "Hannah", "Tim", "Katharina", "David", "Sarah", "Jan", "Lisa", "Tobias",
    "Nina", "Florian", "Miriam", "Stefan", "Elena", "Moritz",
];

#[rustfmt::skip]
const INDUSTRIES: &[&str] = &[
    "Logistik", "Maschinenbau", "Elektrotechnik", "Bau", "Consulting", "Software", "Medien",
    "Handel", "Immobilien", "Metallbau", "Druck", "Verpackung", "Lebensmittel", "Automotive",
    "Haustechnik", "Kunststofftechnik", "Messebau", "Personalservice",
];

#[rustfmt::skip]
const LEGAL_FORMS: &[&str] = &[
    "GmbH", "GmbH", "GmbH", "GmbH & Co. KG", "AG", "KG", "e.K.", "UG (haftungsbeschränkt)",
];

/// `(country, city)` pairs; German cities are over-represented on purpose.
#[rustfmt::skip]
const CITIES: &[(&str, &str)] = &[
    ("DE", "Berlin"), ("DE", "Hamburg"), ("DE", "München"), ("DE", "Köln"),
    ("DE", "Frankfurt am Main"), ("DE", "Stuttgart"), ("DE", "Düsseldorf"), ("DE", "Leipzig"),
    ("DE", "Dortmund"), ("DE", "Essen"), ("DE", "Bremen"), ("DE", "Dresden"), ("DE", "Hannover"),
    ("DE", "Nürnberg"), ("DE", "Mannheim"), ("DE", "Karlsruhe"), ("DE", "Münster"),
    ("DE", "Augsburg"), ("DE", "Freiburg im Breisgau"), ("DE", "Kiel"),
    ("AT", "Wien"), ("AT", "Graz"), ("AT", "Linz"), ("NL", "Amsterdam"), ("NL", "Rotterdam"),
    ("NL", "Utrecht"), ("FR", "Paris"), ("FR", "Lyon"), ("IT", "Milano"), ("IT", "Torino"),
    ("ES", "Madrid"), ("ES", "Barcelona"), ("BE", "Antwerpen"), ("BE", "Bruxelles"),
];

/// `(bank code, BIC)` pairs for German accounts.
#[rustfmt::skip]
const DE_BANKS: &[(&str, &str)] = &[
    ("10040000", "COBADEBBXXX"), ("10070000", "DEUTDEBBXXX"), ("70150000", "SSKMDEMMXXX"),
    ("20050550", "HASPDEHHXXX"), ("37040044", "COBADEFFXXX"), ("50010517", "INGDDEFFXXX"),
    ("60050101", "SOLADEST600"), ("43060967", "GENODEM1GLS"), ("10010010", "PBNKDEFFXXX"),
    ("70020270", "HYVEDEMMXXX"), ("30050110", "DUSSDEDDXXX"), ("86055592", "WELADE8LXXX"),
];

/// Generates a valid-checksum IBAN and a matching BIC for `country`.
fn bank_account(rng: &mut Rng, country: &str) -> (String, &'static str) {
    match country {
        "AT" => {
            let bic = rng.word(&["BKAUATWWXXX", "RZBAATWWXXX", "GIBAATWWXXX", "OBKLAT2LXXX"]);
            (iban_with_check("AT", &rng.digits(16)), bic)
        }
        "NL" => {
            let banks = [
                ("INGB", "INGBNL2AXXX"),
                ("ABNA", "ABNANL2AXXX"),
                ("RABO", "RABONL2UXXX"),
            ];
            let (code, bic) = rng.pick(&banks).copied().unwrap_or(("INGB", "INGBNL2AXXX"));
            (
                iban_with_check("NL", &format!("{code}{}", rng.digits(10))),
                bic,
            )
        }
        "FR" => {
            let bic = rng.word(&["BNPAFRPPXXX", "SOGEFRPPXXX", "CRLYFRPPXXX", "AGRIFRPPXXX"]);
            (iban_with_check("FR", &rng.digits(23)), bic)
        }
        "IT" => {
            let bic = rng.word(&["UNCRITMMXXX", "BCITITMMXXX", "BPMOIT22XXX"]);
            let cin = rng.word(&["A", "B", "K", "M", "X"]);
            (
                iban_with_check("IT", &format!("{cin}{}", rng.digits(22))),
                bic,
            )
        }
        "ES" => {
            let bic = rng.word(&["BBVAESMMXXX", "CAIXESBBXXX", "BSCHESMMXXX"]);
            (iban_with_check("ES", &rng.digits(20)), bic)
        }
        "BE" => {
            let bic = rng.word(&["GEBABEBBXXX", "KREDBEBBXXX", "BBRUBEBBXXX"]);
            (iban_with_check("BE", &rng.digits(12)), bic)
        }
        _ => {
            let (blz, bic) = rng
                .pick(DE_BANKS)
                .copied()
                .unwrap_or(("10040000", "COBADEBBXXX"));
            (
                iban_with_check("DE", &format!("{blz}{}", rng.digits(10))),
                bic,
            )
        }
    }
}

/// A card merchant: `(name, mcc, GL account, tags, min, max, currency)`.
type Merchant = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    i64,
    i64,
    &'static str,
);

#[rustfmt::skip]
const MERCHANTS: &[Merchant] = &[
    ("ARAL Station", "5541", "6530 Vehicle fuel", &["fuel", "vehicle"], 3_000, 11_000, "EUR"),
    ("Shell Deutschland", "5541", "6530 Vehicle fuel", &["fuel", "vehicle"], 2_500, 10_500, "EUR"),
    ("DB Fernverkehr AG", "4112", "6650 Travel - rail", &["travel", "rail"], 1_990, 28_900, "EUR"),
    ("Deutsche Lufthansa AG", "3008", "6660 Travel - air", &["travel", "air"], 8_900, 89_000, "EUR"),
    ("Motel One", "7011", "6680 Travel - lodging", &["travel", "hotel"], 6_900, 24_000, "EUR"),
    ("Amazon EU S.a r.l.", "5942", "6815 Office supplies", &["office", "online"], 899, 34_900, "EUR"),
    ("Staples Deutschland", "5943", "6815 Office supplies", &["office"], 499, 12_900, "EUR"),
    ("Hetzner Online GmbH", "4816", "6837 Hosting", &["it", "hosting", "subscription"], 490, 38_900, "EUR"),
    ("Adobe Systems Software Ireland", "5734", "6838 Software subscriptions", &["it", "software", "subscription"], 2_379, 8_999, "EUR"),
    ("Microsoft Ireland Operations", "5734", "6838 Software subscriptions", &["it", "software", "subscription"], 1_170, 22_000, "EUR"),
    ("GitHub Inc.", "5734", "6838 Software subscriptions", &["it", "software", "subscription"], 400, 21_000, "USD"),
    ("Atlassian Pty Ltd", "5734", "6838 Software subscriptions", &["it", "software", "subscription"], 1_000, 46_000, "USD"),
    ("Amazon Web Services EMEA", "4816", "6837 Hosting", &["it", "hosting", "cloud"], 1_200, 180_000, "USD"),
    ("Vapiano", "5812", "6640 Client entertainment", &["meals", "entertainment"], 1_800, 21_000, "EUR"),
    ("Starbucks Coffee", "5814", "6640 Client entertainment", &["meals"], 390, 2_800, "EUR"),
    ("Uber BV", "4121", "6670 Travel - local", &["travel", "taxi"], 890, 6_400, "EUR"),
    ("REWE Markt GmbH", "5411", "6800 Office kitchen", &["groceries", "office"], 450, 9_800, "EUR"),
    ("IKEA Deutschland", "5712", "0650 Office equipment", &["office", "furniture", "capex"], 1_999, 89_900, "EUR"),
    ("MediaMarkt", "5732", "0650 Office equipment", &["it", "hardware", "capex"], 1_499, 249_900, "EUR"),
    ("Deutsche Post AG", "9402", "6800 Postage", &["postage"], 95, 4_900, "EUR"),
];

/// A direct-debit creditor: `(name, GL account, tags, min, max, memo kind)`.
type Utility = (
    &'static str,
    &'static str,
    &'static [&'static str],
    i64,
    i64,
    &'static str,
);

#[rustfmt::skip]
const UTILITIES: &[Utility] = &[
    ("Stadtwerke", "6325 Electricity", &["utilities", "energy"], 18_000, 64_000, "Abschlag Strom"),
    ("Deutsche Telekom AG", "6805 Telephone", &["utilities", "telecom"], 4_995, 21_990, "Rechnung"),
    ("Vodafone GmbH", "6805 Telephone", &["utilities", "telecom", "mobile"], 2_999, 18_950, "Mobilfunk Rechnung"),
    ("Allianz Versicherungs-AG", "6400 Insurance", &["insurance"], 12_800, 48_000, "Beitrag Betriebshaftpflicht"),
    ("Techniker Krankenkasse", "6110 Social security", &["payroll", "social-security"], 180_000, 620_000, "Beitragsnachweis"),
    ("VBG Verwaltungs-Berufsgenossenschaft", "6120 Accident insurance", &["payroll", "insurance"], 9_000, 41_000, "Beitrag"),
    ("Rundfunk ARD ZDF Deutschlandradio", "6300 Fees and dues", &["fees"], 1_836, 1_836, "Rundfunkbeitrag"),
    ("IHK", "6300 Fees and dues", &["fees", "membership"], 15_000, 39_000, "Kammerbeitrag"),
];

const CUSTOMER_MEMOS: &[&str] = &[
    "Invoice {inv} / customer {cust}",
    "Payment invoice {inv}",
    "RE {inv} abzgl. 2% Skonto",
    "Rechnung {inv} vom {date}",
    "{inv} Abschlag Projekt {proj}",
    "Zahlung Rechnungsnr. {inv} Kd-Nr. {cust}",
    "Invoice {inv} project {proj} milestone {ms}",
];

const SUPPLIER_MEMOS: &[&str] = &[
    "Rechnung {inv} Bestellung {po}",
    "Invoice {inv} / {po}",
    "{inv} Lieferschein {ds}",
    "{po} partial payment, inv {inv}",
    "Rechnung Nr. {inv} Kundennummer {cust}",
];

const PROJECTS: &[&str] = &[
    "Nordstern",
    "Phoenix",
    "Relaunch Webshop",
    "ERP-Migration",
    "Atlas",
    "Hafencity",
    "Rollout Q3",
    "Wartungsvertrag",
    "Lagererweiterung",
    "Datenplattform",
];

#[rustfmt::skip]
const MONTHS_DE: &[&str] = &[
    "Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
    "November", "Dezember",
];

const CLERKS: &[&str] = &["j.becker", "m.weber", "s.hoffmann", "t.klein", "a.schulz"];

// ---------------------------------------------------------------------------
// Ledger generator
// ---------------------------------------------------------------------------

/// A counterparty with a bank account.
struct Party {
    name: String,
    number: String,
    city: &'static str,
    country: &'static str,
    iban: String,
    bic: &'static str,
    invoice_prefix: String,
    invoice_seq: u64,
}

impl Party {
    fn generate(rng: &mut Rng, number: String, invoice_prefix: String) -> Self {
        let place = rng.pick(CITIES).copied().unwrap_or(("DE", "Berlin"));
        Self::generate_in(rng, place, number, invoice_prefix)
    }

    fn generate_in(
        rng: &mut Rng,
        (country, city): (&'static str, &'static str),
        number: String,
        invoice_prefix: String,
    ) -> Self {
        let surname = rng.word(SURNAMES);
        let name = match rng.below(4) {
            0 => format!(
                "{surname} & {} {}",
                rng.word(SURNAMES),
                rng.word(LEGAL_FORMS)
            ),
            1 => format!(
                "{surname} {} {}",
                rng.word(INDUSTRIES),
                rng.word(LEGAL_FORMS)
            ),
            2 => format!(
                "{} {surname} {}",
                rng.word(INDUSTRIES),
                rng.word(LEGAL_FORMS)
            ),
            _ => format!("{surname} {}", rng.word(LEGAL_FORMS)),
        };
        let (iban, bic) = bank_account(rng, country);
        let invoice_seq = rng.range(100, 4_000);
        Self {
            name,
            number,
            city,
            country,
            iban,
            bic,
            invoice_prefix,
            invoice_seq,
        }
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "iban": self.iban,
            "bic": self.bic,
            "city": self.city,
            "country": self.country,
        })
    }
}

/// An employee paid monthly.
struct Employee {
    party: Party,
    personnel_no: u64,
    net_salary: i64,
}

struct Ledger {
    rng: Rng,
    aggregate_id: String,
    owner: Party,
    owner_customer_id: String,
    vat_id: String,
    register: String,
    tax_no: String,
    landlord: Party,
    rent: i64,
    customers: Vec<Party>,
    suppliers: Vec<Party>,
    employees: Vec<Employee>,
    utilities: Vec<(Utility, Party, String)>,
    card_last4: String,
    opening_balance: i64,
    opened_at: i64,
    balance: i64,
    total_credits: i64,
    total_debits: i64,
    sequence: u64,
    now: i64,
    last_month: (i64, i64),
    pending: VecDeque<Recurring>,
    tax_office_iban: String,
    our_invoice_seq: u64,
    po_seq: u64,
}

impl Ledger {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let aggregate_id = rng.uuid_v4();
        let de_cities = CITIES.get(..20).unwrap_or(CITIES);
        let place = rng.pick(de_cities).copied().unwrap_or(("DE", "Berlin"));
        let owner = Party::generate_in(&mut rng, place, String::new(), String::new());
        let owner_customer_id = format!("BK-{}", rng.digits(9));
        let vat_id = format!("DE{}", rng.digits(9));
        let register = format!(
            "HRB {} {}",
            rng.range(1_000, 249_999),
            rng.word(&["B", "", "HH", "M"])
        )
        .trim_end()
        .to_string();
        let tax_no = format!("{}/{}/{}", rng.digits(2), rng.digits(3), rng.digits(5));
        let landlord = Party::generate_in(&mut rng, place, String::new(), String::new());
        let rent = i64::try_from(rng.range(2_800, 9_500)).unwrap_or(4_000) * 100;

        let customer_count = usize::try_from(rng.range(30, 70)).unwrap_or(40);
        let customers = (0..customer_count)
            .map(|i| {
                let number = format!(
                    "K{}",
                    10_000 + i * 7 + usize::try_from(rng.below(7)).unwrap_or(0)
                );
                Party::generate(&mut rng, number, String::new())
            })
            .collect();
        let supplier_count = usize::try_from(rng.range(15, 40)).unwrap_or(20);
        let suppliers = (0..supplier_count)
            .map(|_| {
                let number = rng.digits(6);
                let prefix = match rng.below(5) {
                    0 => "INV-".to_string(),
                    1 => "R".to_string(),
                    2 => "RG-".to_string(),
                    3 => format!("{}-", rng.upper_hex(2)),
                    _ => String::new(),
                };
                Party::generate(&mut rng, number, prefix)
            })
            .collect();
        let employee_count = rng.range(6, 18);
        let employees = (0..employee_count)
            .map(|i| {
                let place = rng.pick(de_cities).copied().unwrap_or(("DE", "Berlin"));
                let mut party = Party::generate_in(&mut rng, place, String::new(), String::new());
                party.name = format!("{} {}", rng.word(FIRST_NAMES), rng.word(SURNAMES));
                Employee {
                    party,
                    personnel_no: 1_000 + i * 3 + rng.below(3),
                    net_salary: i64::try_from(rng.range(2_100, 5_900)).unwrap_or(3_000) * 100
                        + i64::try_from(rng.range(0, 99)).unwrap_or(0),
                }
            })
            .collect();
        let utilities = UTILITIES
            .iter()
            .map(|u| {
                let number = rng.digits(10);
                let mut party = Party::generate(&mut rng, number, String::new());
                party.name = if u.0 == "Stadtwerke" || u.0 == "IHK" {
                    format!("{} {}", u.0, owner.city)
                } else {
                    u.0.to_string()
                };
                let mandate = format!("MNDT-{}-{}", rng.upper_hex(6), rng.digits(4));
                (*u, party, mandate)
            })
            .collect();
        let tax_office_iban =
            iban_with_check("DE", &format!("86000000{:010}", 8_600_150 + rng.below(99)));
        let card_last4 = rng.digits(4);
        let opening_balance = i64::try_from(rng.range(2_500_000, 9_000_000)).unwrap_or(5_000_000);
        let opened_at = BASE_EPOCH_SECS + rng.range_i64(0, 30 * SECS_PER_DAY);
        let now = opened_at + 8 * 3_600;
        let start = civil_from_days(now.div_euclid(SECS_PER_DAY));
        Self {
            rng,
            aggregate_id,
            owner,
            owner_customer_id,
            vat_id,
            register,
            tax_no,
            landlord,
            rent,
            customers,
            suppliers,
            employees,
            utilities,
            card_last4,
            opening_balance,
            opened_at,
            balance: opening_balance,
            total_credits: 0,
            total_debits: 0,
            sequence: 0,
            now,
            last_month: (start.0, start.1),
            pending: VecDeque::new(),
            tax_office_iban,
            our_invoice_seq: 1_000,
            po_seq: 40_000,
        }
    }

    /// The aggregate snapshot with the given entries.
    fn header(&self, entries: Vec<Value>) -> Value {
        json!({
            "aggregate_type": "LedgerAccount",
            "aggregate_id": self.aggregate_id,
            "version": self.sequence,
            "account": {
                "iban": self.owner.iban,
                "bic": self.owner.bic,
                "product": "Business Current Account Plus",
                "currency": "EUR",
                "overdraft_limit": money(5_000_000),
                "status": "active",
            },
            "owner": {
                "name": self.owner.name,
                "customer_id": self.owner_customer_id,
                "vat_id": self.vat_id,
                "tax_no": self.tax_no,
                "register": self.register,
                "city": self.owner.city,
                "country": self.owner.country,
            },
            "opened_at": rfc3339(self.opened_at),
            "opening_balance": money(self.opening_balance),
            "balance": money(self.balance),
            "total_credits": money(self.total_credits),
            "total_debits": money(self.total_debits),
            "entry_count": self.sequence,
            "last_posted_at": rfc3339(self.now),
            "entries": entries,
        })
    }

    /// Produces the next ledger entry, advancing the clock and the balance.
    fn next_entry(&mut self) -> Value {
        while let Some(item) = self.pending.pop_front() {
            if let Some(entry) = self.recurring(item) {
                return entry;
            }
        }
        self.advance_clock();
        let (y, m, _) = civil_from_days(self.now.div_euclid(SECS_PER_DAY));
        if (y, m) != self.last_month {
            let previous = self.last_month;
            self.last_month = (y, m);
            self.queue_month_end(previous);
            while let Some(item) = self.pending.pop_front() {
                if let Some(entry) = self.recurring(item) {
                    return entry;
                }
            }
        }
        self.regular_entry()
    }

    /// Moves time forward: business hours on weekdays, quieter weekends.
    fn advance_clock(&mut self) {
        self.now += self.rng.range_i64(45, 5_400);
        let tod = self.now.rem_euclid(SECS_PER_DAY);
        if !(7 * 3_600..19 * 3_600).contains(&tod) {
            let mut day = self.now.div_euclid(SECS_PER_DAY);
            if tod >= 19 * 3_600 {
                day += 1;
            }
            self.now = day * SECS_PER_DAY + 7 * 3_600 + self.rng.range_i64(0, 5_400);
        }
        // Skip most of the weekend (an occasional card payment still happens).
        if weekday(self.now) >= 5 && !self.rng.chance(5) {
            let day = self.now.div_euclid(SECS_PER_DAY) + (7 - weekday(self.now));
            self.now = day * SECS_PER_DAY + 7 * 3_600 + self.rng.range_i64(0, 5_400);
        }
    }

    /// Books `amount` (signed minor units) and renders the entry.
    #[allow(clippy::too_many_arguments)]
    fn book(
        &mut self,
        kind: &str,
        booking_text: &str,
        account: &str,
        amount: i64,
        counterparty: Value,
        memo: String,
        reference: String,
        tags: &[&str],
        extra: Option<(&str, Value)>,
    ) -> Value {
        self.sequence += 1;
        self.balance += amount;
        if amount >= 0 {
            self.total_credits += amount;
        } else {
            self.total_debits += -amount;
        }
        let source = if self.rng.chance(3) {
            format!("manual:{}", self.rng.word(CLERKS))
        } else if kind == "card_payment" {
            "card-feed".to_string()
        } else {
            "camt.053".to_string()
        };
        let value_date = if kind == "card_payment" {
            date_string(self.now - self.rng.range_i64(0, 2) * SECS_PER_DAY)
        } else {
            date_string(self.now)
        };
        let status = if self.rng.chance(35) {
            "reconciled"
        } else {
            "booked"
        };
        let mut entry = Map::new();
        entry.insert("entry_id".into(), Value::from(self.rng.uuid_v4()));
        entry.insert("sequence".into(), Value::from(self.sequence));
        entry.insert("posted_at".into(), Value::from(rfc3339(self.now)));
        entry.insert("value_date".into(), Value::from(value_date));
        entry.insert("kind".into(), Value::from(kind));
        entry.insert("booking_text".into(), Value::from(booking_text));
        // ISO 20022 bank transaction code (domain-family-subfamily), as in camt.053.
        let code = match kind {
            "sepa_credit" => "PMNT-RCDT-ESCT",
            "card_payment" => "PMNT-CCRD-POSD",
            "direct_debit" => "PMNT-RDDT-ESDD",
            "standing_order" => "PMNT-ICDT-STDO",
            "fee" => "ACMT-MDOP-CHRG",
            "interest" => "ACMT-MDOP-INTR",
            _ => "PMNT-ICDT-ESCT",
        };
        entry.insert("bank_transaction_code".into(), Value::from(code));
        entry.insert("account".into(), Value::from(account));
        entry.insert("counterparty".into(), counterparty);
        entry.insert("amount".into(), Value::from(money(amount)));
        entry.insert("currency".into(), Value::from("EUR"));
        entry.insert("balance_after".into(), Value::from(money(self.balance)));
        entry.insert("memo".into(), Value::from(memo));
        entry.insert("reference".into(), Value::from(reference));
        entry.insert("tags".into(), Value::from(tags.to_vec()));
        entry.insert("status".into(), Value::from(status));
        entry.insert("source".into(), Value::from(source));
        if let Some((key, value)) = extra {
            entry.insert(key.into(), value);
        }
        Value::Object(entry)
    }

    fn e2e_reference(&mut self) -> String {
        let date = date_string(self.now).replace('-', "");
        format!("E2E-{date}-{}", self.rng.upper_hex(8))
    }

    fn regular_entry(&mut self) -> Value {
        // Feedback keeps the balance in a plausible band.
        let customer_pct = if self.balance < 1_500_000 {
            40
        } else if self.balance > 25_000_000 {
            8
        } else {
            22
        };
        let roll = self.rng.below(100);
        if roll < customer_pct {
            self.customer_payment()
        } else if roll < customer_pct + 18 {
            self.supplier_payment()
        } else if roll < customer_pct + 21 {
            self.bank_fee("SEPA-Überweisung Gebühr", 35, 250)
        } else {
            self.card_payment()
        }
    }

    fn customer_payment(&mut self) -> Value {
        let i = self.rng.skewed_index(self.customers.len());
        let invoice_no = format!("RE-{}-{:05}", self.last_month.0, self.our_invoice_seq);
        self.our_invoice_seq += self.rng.range(1, 3);
        let invoice_date = date_string(self.now - self.rng.range_i64(10, 45) * SECS_PER_DAY);
        let template = self.rng.word(CUSTOMER_MEMOS);
        let project = self.rng.word(PROJECTS);
        let milestone = self.rng.range(1, 6);
        let net = self.rng.range_i64(15_000, 480_000);
        // Gross with 19 % VAT, rounded to cents; sometimes minus 2 % Skonto.
        let mut gross = (net * 119 + 50) / 100;
        if template.contains("Skonto") {
            gross = (gross * 98 + 50) / 100;
        }
        let Some(party) = self.customers.get(i) else {
            return self.card_payment();
        };
        let memo = template
            .replace("{inv}", &invoice_no)
            .replace("{cust}", &party.number)
            .replace("{date}", &invoice_date)
            .replace("{proj}", project)
            .replace("{ms}", &milestone.to_string());
        let counterparty = party.json();
        let reference = self.e2e_reference();
        let tags: &[&str] = if self.rng.chance(30) {
            &["revenue", "receivable", "project"]
        } else {
            &["revenue", "receivable"]
        };
        self.book(
            "sepa_credit",
            "SEPA CREDIT TRANSFER",
            "8400 Revenue 19% VAT",
            gross,
            counterparty,
            memo,
            reference,
            tags,
            None,
        )
    }

    fn supplier_payment(&mut self) -> Value {
        let i = self.rng.skewed_index(self.suppliers.len());
        let template = self.rng.word(SUPPLIER_MEMOS);
        let po = format!("PO-{}", self.po_seq);
        self.po_seq += self.rng.range(1, 4);
        let delivery = self.rng.digits(7);
        let account = self.rng.word(&[
            "3400 Goods purchased 19% VAT",
            "3400 Goods purchased 19% VAT",
            "4900 Other operating expenses",
            "4960 Equipment rental",
            "4780 External services",
            "4610 Advertising",
        ]);
        let amount = -self.rng.range_i64(4_900, 350_000);
        let reference = self.e2e_reference();
        let owner_customer_id = self.owner_customer_id.clone();
        let Some(party) = self.suppliers.get_mut(i) else {
            return self.card_payment();
        };
        party.invoice_seq += 1;
        let invoice_no = format!("{}{}", party.invoice_prefix, party.invoice_seq);
        let cust = if party.number.is_empty() {
            owner_customer_id
        } else {
            party.number.clone()
        };
        let memo = template
            .replace("{inv}", &invoice_no)
            .replace("{po}", &po)
            .replace("{ds}", &delivery)
            .replace("{cust}", &cust);
        let counterparty = party.json();
        self.book(
            "sepa_transfer",
            "SEPA TRANSFER",
            account,
            amount,
            counterparty,
            memo,
            reference,
            &["expense", "payable"],
            None,
        )
    }

    fn card_payment(&mut self) -> Value {
        let i = self.rng.skewed_index(MERCHANTS.len());
        let Some(&(name, mcc, account, tags, min, max, currency)) = MERCHANTS.get(i) else {
            return self.bank_fee("Kontoführung", 900, 900);
        };
        let &(country, city) = self.rng.pick(CITIES).unwrap_or(&("DE", "Berlin"));
        let (country, city) = if currency == "USD" {
            ("US", "San Francisco")
        } else {
            (country, city)
        };
        let original = retail_price(&mut self.rng, min, max);
        let (eur, fx) = if currency == "EUR" {
            (original, None)
        } else {
            let rate_e4 = self.rng.range_i64(10_450, 11_250); // USD per EUR × 10⁴
            let eur = (original * 10_000 + rate_e4 / 2) / rate_e4;
            let fx = json!({
                "original_amount": money(original),
                "original_currency": currency,
                "rate": format!("{}.{:04}", rate_e4 / 10_000, rate_e4 % 10_000),
            });
            (eur, Some(("fx", fx)))
        };
        let day = date_string(self.now);
        let ddmm = format!(
            "{}.{}.",
            day.get(8..10).unwrap_or("01"),
            day.get(5..7).unwrap_or("01")
        );
        let memo = format!(
            "VISA Debit {}xxxxxx{} {name} {city} {ddmm}",
            self.rng.word(&["4871", "4417"]),
            self.card_last4
        );
        let counterparty = json!({ "name": name, "city": city, "country": country, "mcc": mcc });
        let reference = format!("AUTH-{}", self.rng.digits(6));
        let extra = fx.or(Some((
            "card",
            json!({ "last4": self.card_last4, "scheme": "visa" }),
        )));
        self.book(
            "card_payment",
            "CARD PAYMENT",
            account,
            -eur,
            counterparty,
            memo,
            reference,
            tags,
            extra,
        )
    }

    fn bank_fee(&mut self, what: &str, min: i64, max: i64) -> Value {
        let amount = -self.rng.range_i64(min, max);
        let counterparty = json!({ "name": "Hausbank", "bic": self.owner.bic, "country": "DE" });
        let memo = format!("{what} {}", date_string(self.now));
        let reference = format!("FEE-{}", self.rng.digits(8));
        self.book(
            "fee",
            "BANK FEE",
            "6855 Bank charges",
            amount,
            counterparty,
            memo,
            reference,
            &["fees", "bank"],
            None,
        )
    }

    /// Queues the recurring bookings due after the month `(year, month)` ended.
    /// They are booked lazily, one per [`Ledger::next_entry`] call, so the
    /// header totals never include entries that have not been emitted.
    fn queue_month_end(&mut self, (year, month): (i64, i64)) {
        self.pending.clear();
        self.pending.push_back(Recurring::Rent);
        for i in 0..self.employees.len() {
            self.pending.push_back(Recurring::Salary(i, year, month));
        }
        for i in 0..self.utilities.len() {
            self.pending
                .push_back(Recurring::DirectDebit(i, year, month));
        }
        self.pending.push_back(Recurring::Vat(year, month));
        self.pending.push_back(Recurring::AccountFee(year, month));
        self.pending.push_back(Recurring::Interest(year, month));
    }

    /// Books one queued recurring item (`None` if it does not apply).
    fn recurring(&mut self, item: Recurring) -> Option<Value> {
        self.now += self.rng.range_i64(1, 25);
        match item {
            Recurring::Rent => {
                let (year, month) = self.last_month;
                let counterparty = self.landlord.json();
                let reference = self.e2e_reference();
                Some(self.book(
                    "standing_order",
                    "STANDING ORDER",
                    "4210 Rent",
                    -self.rent,
                    counterparty,
                    format!("Miete Büro {} {month:02}/{year}", self.owner.city),
                    reference,
                    &["rent", "recurring"],
                    None,
                ))
            }
            Recurring::Salary(i, year, month) => {
                let month_name = usize::try_from(month - 1)
                    .ok()
                    .and_then(|m| MONTHS_DE.get(m))
                    .copied()
                    .unwrap_or("Januar");
                let e = self.employees.get(i)?;
                let counterparty = e.party.json();
                let amount = -e.net_salary;
                let memo = format!("Gehalt {month_name} {year} PersNr {}", e.personnel_no);
                let reference = self.e2e_reference();
                Some(self.book(
                    "payroll",
                    "SALARY PAYMENT",
                    "4120 Wages and salaries",
                    amount,
                    counterparty,
                    memo,
                    reference,
                    &["payroll", "recurring"],
                    None,
                ))
            }
            Recurring::DirectDebit(i, year, month) => {
                let ((_, account, tags, min, max, what), party, mandate) = self.utilities.get(i)?;
                let (account, tags, min, max) = (*account, *tags, *min, *max);
                let counterparty = party.json();
                let memo = format!(
                    "{what} {month:02}/{year} Kd-Nr {} Mandat {mandate}",
                    party.number
                );
                let amount = -self.rng.range_i64(min, max);
                let reference = format!("DD-{}", self.rng.upper_hex(10));
                let mut tags = tags.to_vec();
                tags.push("direct-debit");
                Some(self.book(
                    "direct_debit",
                    "SEPA DIRECT DEBIT",
                    account,
                    amount,
                    counterparty,
                    memo,
                    reference,
                    &tags,
                    None,
                ))
            }
            Recurring::Vat(year, month) => {
                let tax_office = json!({
                    "name": format!("Finanzamt {}", self.owner.city),
                    "iban": self.tax_office_iban,
                    "bic": "MARKDEF1860",
                    "country": "DE",
                });
                let vat = -self.rng.range_i64(150_000, 1_900_000);
                let reference = self.e2e_reference();
                let memo = format!("StNr {} USt-VA {month:02}/{year}", self.tax_no);
                Some(self.book(
                    "tax_payment",
                    "SEPA TRANSFER",
                    "1780 VAT prepayments",
                    vat,
                    tax_office,
                    memo,
                    reference,
                    &["tax", "vat", "recurring"],
                    None,
                ))
            }
            Recurring::AccountFee(year, month) => Some(self.bank_fee(
                &format!("Kontoführungsentgelt {month:02}/{year}"),
                1_990,
                1_990,
            )),
            Recurring::Interest(year, month) => {
                if self.balance <= 0 {
                    return None;
                }
                let interest = self.balance / 4_800; // ~0.25 % p.a., paid monthly
                let counterparty =
                    json!({ "name": "Hausbank", "bic": self.owner.bic, "country": "DE" });
                Some(self.book(
                    "interest",
                    "INTEREST CREDIT",
                    "7100 Interest income",
                    interest,
                    counterparty,
                    format!("Habenzinsen {month:02}/{year}"),
                    format!("INT-{year}{month:02}"),
                    &["interest", "bank"],
                    None,
                ))
            }
        }
    }
}

/// A recurring month-end booking waiting to be emitted.
#[derive(Clone, Copy)]
enum Recurring {
    Rent,
    Salary(usize, i64, i64),
    DirectDebit(usize, i64, i64),
    Vat(i64, i64),
    AccountFee(i64, i64),
    Interest(i64, i64),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn is_uuid_v4(s: &str) -> bool {
        let b = s.as_bytes();
        s.len() == 36
            && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
            && b.iter().enumerate().all(|(i, c)| {
                [8, 13, 18, 23].contains(&i) || c.is_ascii_digit() || (b'a'..=b'f').contains(c)
            })
            && b[14] == b'4'
            && matches!(b[19], b'8' | b'9' | b'a' | b'b')
    }

    fn is_rfc3339(s: &str) -> bool {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let base = b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19);
        let tail = match b.len() {
            20 => b[19] == b'Z',
            24 => b[19] == b'.' && digits(20..23) && b[23] == b'Z',
            _ => false,
        };
        base && tail
    }

    fn iban_valid(iban: &str) -> bool {
        let (head, bban) = iban.split_at(4);
        let mut rem = 0u32;
        for c in format!("{bban}{head}").chars() {
            let v = c.to_digit(36).unwrap();
            rem = if v < 10 {
                (rem * 10 + v) % 97
            } else {
                (rem * 100 + v) % 97
            };
        }
        rem == 1
    }

    #[test]
    fn civil_dates_are_correct() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_648_529), "2024-03-05T14:22:09Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-86_400), "1969-12-31T00:00:00Z");
        assert_eq!(rfc3339_millis(1_709_648_529, 7), "2024-03-05T14:22:09.007Z");
        assert_eq!(weekday(1_709_648_529), 1); // a Tuesday
    }

    #[test]
    fn iban_check_digits_match_known_example() {
        // The canonical example IBAN from the ISO 13616 / ECBS documentation.
        assert_eq!(
            iban_with_check("DE", "370400440532013000"),
            "DE89370400440532013000"
        );
        assert!(iban_valid("GB82WEST12345698765432"));
    }

    #[test]
    fn money_formatting() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(12_995), "129.95");
        assert_eq!(money(-4_217), "-42.17");
    }

    #[test]
    fn small_event_size_and_shape() {
        for seed in 0..2_000 {
            let event = small_event(seed);
            let len = serde_json::to_vec(&event).unwrap().len();
            assert!((250..=350).contains(&len), "seed {seed}: {len} bytes");
            assert!(
                is_uuid_v4(event["event_id"].as_str().unwrap()),
                "seed {seed}"
            );
            assert!(
                is_rfc3339(event["occurred_at"].as_str().unwrap()),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn small_event_is_deterministic_and_seed_dependent() {
        assert_eq!(small_event(42), small_event(42));
        assert_ne!(small_event(42), small_event(43));
    }

    #[test]
    fn ledger_snapshot_size_is_tight() {
        for (target, seed) in [
            (0, 1),
            (1, 2),
            (50_000, 3),
            (200_000, 4),
            (SNAPSHOT_1_5_MB, 5),
        ] {
            let snap = ledger_snapshot(target, seed);
            let len = serde_json::to_vec(&snap).unwrap().len();
            assert!(len >= target, "target {target}: {len}");
            let entries = snap["entries"].as_array().unwrap();
            assert!(!entries.is_empty());
            let last = serde_json::to_vec(entries.last().unwrap()).unwrap().len();
            if entries.len() > 1 {
                // Without the last entry (and its comma) the target was not yet
                // reached (header fields differ by at most a few bytes).
                assert!(
                    len - last - 1 < target + 16,
                    "target {target}: {len} (last {last})"
                );
            }
            assert!(len < target + 2_048, "target {target}: {len}");
        }
    }

    #[test]
    fn ledger_snapshot_balances_are_consistent() {
        let snap = ledger_snapshot(400_000, 7);
        let parse = |v: &Value| -> i64 {
            let s = v.as_str().unwrap();
            let neg = s.starts_with('-');
            let (units, cents) = s.trim_start_matches('-').split_once('.').unwrap();
            let minor = units.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap();
            if neg {
                -minor
            } else {
                minor
            }
        };
        let mut balance = parse(&snap["opening_balance"]);
        let (mut credits, mut debits) = (0, 0);
        let entries = snap["entries"].as_array().unwrap();
        let mut previous_posted = String::new();
        for (i, e) in entries.iter().enumerate() {
            let amount = parse(&e["amount"]);
            balance += amount;
            if amount >= 0 {
                credits += amount
            } else {
                debits -= amount
            }
            assert_eq!(parse(&e["balance_after"]), balance, "entry {i}");
            assert_eq!(
                e["sequence"].as_u64().unwrap(),
                u64::try_from(i).unwrap() + 1
            );
            assert!(is_uuid_v4(e["entry_id"].as_str().unwrap()));
            let posted = e["posted_at"].as_str().unwrap().to_string();
            assert!(is_rfc3339(&posted));
            assert!(posted >= previous_posted, "entry {i} goes back in time");
            previous_posted = posted;
            if let Some(iban) = e["counterparty"].get("iban") {
                assert!(iban_valid(iban.as_str().unwrap()), "{iban}");
            }
        }
        assert_eq!(parse(&snap["balance"]), balance);
        assert_eq!(parse(&snap["total_credits"]), credits);
        assert_eq!(parse(&snap["total_debits"]), debits);
        assert_eq!(
            snap["entry_count"].as_u64().unwrap(),
            u64::try_from(entries.len()).unwrap()
        );
        assert_eq!(snap["last_posted_at"], entries.last().unwrap()["posted_at"]);
        assert!(iban_valid(snap["account"]["iban"].as_str().unwrap()));
        // No two entries are identical.
        let mut ids: Vec<&str> = entries
            .iter()
            .map(|e| e["entry_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), entries.len());
    }

    #[test]
    fn ledger_snapshot_is_deterministic_and_seed_dependent() {
        let a = serde_json::to_vec(&ledger_snapshot(100_000, 11)).unwrap();
        let b = serde_json::to_vec(&ledger_snapshot(100_000, 11)).unwrap();
        let c = serde_json::to_vec(&ledger_snapshot(100_000, 12)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
