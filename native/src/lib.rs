//! driftline's batch decoder: a micro-batch of prediction events (JSON, one per message) straight
//! into columns, with no Python object per event except its id.
//!
//! It vouches only for the plain, well-formed case of a model whose feature kinds are learned:
//! a numeric prediction, a text one or a probability map (read as its top class), integer `ts`,
//! string segment values, numbers for numeric features and strings or bools for text ones, only the
//! configured segment and feature keys. Any event outside that, anywhere in the batch, makes
//! [`decode`] return `None`, and the
//! caller decodes the whole batch the general way (which accepts, or explains in a dead letter).
//! So the rules here are a strict subset of the typed msgspec decoder's (`stream.decode.Schema`);
//! the Python tests feed both the same inputs and compare.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use std::borrow::Cow;
use std::collections::HashMap;

/// The accepted event times (milliseconds, `MIN_TS..MAX_TS`), as `stream.contract`'s: outside
/// them the batch goes the general way, which dead-letters the event with the reason.
const MIN_TS: i64 = 946_684_800_000;
const MAX_TS: i64 = 4_102_444_800_000;
/// Bounds on text and maps, as `stream.contract`'s `MAX_TEXT` (characters), `MAX_SEGMENT_KEYS` and
/// `MAX_CLASSES`: beyond them the batch goes the general way, which dead-letters the event.
const MAX_TEXT: usize = 256;
const MAX_SEGMENT_KEYS: usize = 32;
const MAX_CLASSES: usize = 1024;

/// At most `MAX_TEXT` characters (a byte count within it says so without counting).
fn short(s: &str) -> R<()> {
    if s.len() <= MAX_TEXT || s.chars().count() <= MAX_TEXT {
        Ok(())
    } else {
        Err(Refuse)
    }
}
/// Deepest nesting accepted inside a field this decoder does not read.
const MAX_DEPTH: usize = 64;
/// Distinct text predictions a model's table keeps numbers for.
const MAX_LABELS: usize = 4096;
/// A segment key the event leaves out has this value (as in the typed decoder).
const NONE: &str = "(none)";

/// FNV-1a, for the feature names (keys from the process's own configuration). The segment table,
/// whose keys come from the input, keeps std's keyed SipHash: crafted segments cannot make it slow.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// This event is not one the decoder vouches for.
struct Refuse;
type R<T> = Result<T, Refuse>;

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

fn hex4(b: &[u8], at: usize) -> R<u32> {
    let s = b.get(at..at + 4).ok_or(Refuse)?;
    let mut v = 0u32;
    for &c in s {
        v = v * 16 + (c as char).to_digit(16).ok_or(Refuse)?;
    }
    Ok(v)
}

impl<'a> P<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> R<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Refuse)
    }

    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? != c {
            return Err(Refuse);
        }
        self.i += 1;
        Ok(())
    }

    /// After a member: `,` (more follow) or the closing bracket (false).
    fn more(&mut self, close: u8) -> R<bool> {
        let c = self.peek()?;
        self.i += 1;
        if c == b',' {
            Ok(true)
        } else if c == close {
            Ok(false)
        } else {
            Err(Refuse)
        }
    }

    /// An opening bracket; false when the container is empty (and already closed).
    fn open(&mut self, open: u8, close: u8) -> R<bool> {
        self.eat(open)?;
        if self.peek()? == close {
            self.i += 1;
            return Ok(false);
        }
        Ok(true)
    }

    fn string(&mut self) -> R<Cow<'a, str>> {
        self.eat(b'"')?;
        let b = self.b;
        let start = self.i;
        let mut j = start;
        let mut high = 0u8; // any byte >= 0x80: then the text must be checked as UTF-8
        loop {
            match *b.get(j).ok_or(Refuse)? {
                b'"' => {
                    self.i = j + 1;
                    let text = &b[start..j];
                    if high < 0x80 {
                        // SAFETY: every byte is ASCII, so the slice is UTF-8.
                        return Ok(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(text) }));
                    }
                    return std::str::from_utf8(text).map(Cow::Borrowed).map_err(|_| Refuse);
                }
                b'\\' => break,
                c if c < 0x20 => return Err(Refuse),
                c => {
                    high |= c;
                    j += 1;
                }
            }
        }
        let mut out = b[start..j].to_vec();
        loop {
            match *b.get(j).ok_or(Refuse)? {
                b'"' => {
                    self.i = j + 1;
                    return String::from_utf8(out).map(Cow::Owned).map_err(|_| Refuse);
                }
                b'\\' => {
                    let e = *b.get(j + 1).ok_or(Refuse)?;
                    j += 2;
                    let simple = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => 0,
                        _ => return Err(Refuse),
                    };
                    if e != b'u' {
                        out.push(simple);
                        continue;
                    }
                    let hi = hex4(b, j)?;
                    j += 4;
                    let cp = match hi {
                        0xD800..=0xDBFF => {
                            if b.get(j..j + 2) != Some(b"\\u") {
                                return Err(Refuse);
                            }
                            let lo = hex4(b, j + 2)?;
                            if !(0xDC00..=0xDFFF).contains(&lo) {
                                return Err(Refuse);
                            }
                            j += 6;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return Err(Refuse),
                        _ => hi,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(char::from_u32(cp).ok_or(Refuse)?.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err(Refuse),
                c => {
                    out.push(c);
                    j += 1;
                }
            }
        }
    }

    /// A JSON number's text, and whether it is an integer literal (no fraction, no exponent).
    fn number(&mut self) -> R<(&'a str, bool)> {
        self.number_parts().map(|(t, int, _)| (t, int))
    }

    /// As `number`, plus the value when the text is a short decimal that converts exactly: at most
    /// 15 significant digits and no exponent, so digits / 10^k is one correctly rounded division
    /// (both operands are exact doubles). Anything else is left to the full parser.
    fn number_parts(&mut self) -> R<(&'a str, bool, Option<f64>)> {
        self.ws();
        let b = self.b;
        let s = self.i;
        let mut j = s;
        let digits = |j: &mut usize| {
            let d = *j;
            while b.get(*j).is_some_and(u8::is_ascii_digit) {
                *j += 1;
            }
            *j > d
        };
        let neg = b.get(j) == Some(&b'-');
        if neg {
            j += 1;
        }
        let whole = j;
        match b.get(j) {
            Some(b'0') => j += 1,
            Some(b'1'..=b'9') => {
                digits(&mut j);
            }
            _ => return Err(Refuse),
        }
        let whole_end = j;
        let mut int = true;
        let mut frac = j..j;
        if b.get(j) == Some(&b'.') {
            int = false;
            j += 1;
            let f = j;
            if !digits(&mut j) {
                return Err(Refuse);
            }
            frac = f..j;
        }
        let mut exp = false;
        if let Some(b'e' | b'E') = b.get(j) {
            int = false;
            exp = true;
            j += 1;
            if let Some(b'+' | b'-') = b.get(j) {
                j += 1;
            }
            if !digits(&mut j) {
                return Err(Refuse);
            }
        }
        self.i = j;
        let mut quick = None;
        if !exp && (whole_end - whole) + frac.len() <= 15 {
            let mut m: u64 = 0;
            for &c in b[whole..whole_end].iter().chain(&b[frac.clone()]) {
                m = m * 10 + (c - b'0') as u64;
            }
            const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
            let x = m as f64 / POW10[frac.len()];
            // an integer literal is an integer first: "-0" is 0, and 0.0 as a float (as msgspec reads it)
            quick = Some(if neg && !(int && m == 0) { -x } else { x });
        }
        // SAFETY: ASCII by construction.
        Ok((unsafe { std::str::from_utf8_unchecked(&b[s..j]) }, int, quick))
    }

    /// A finite number as a float. Integer literals must fit 64 bits (the typed decoder refuses some
    /// longer ones), and the float parse is correctly rounded, as msgspec's.
    fn float(&mut self) -> R<f64> {
        let (t, int, quick) = self.number_parts()?;
        if let Some(x) = quick {
            return Ok(x);
        }
        let x = if int {
            match t.parse::<i64>() {
                Ok(v) => v as f64,
                Err(_) => t.parse::<u64>().map_err(|_| Refuse)? as f64,
            }
        } else {
            t.parse::<f64>().map_err(|_| Refuse)?
        };
        if x.is_finite() {
            Ok(x)
        } else {
            Err(Refuse)
        }
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        self.ws();
        if self.b.get(self.i..self.i + word.len()) != Some(word) {
            return Err(Refuse);
        }
        self.i += word.len();
        Ok(())
    }

    /// Null, or false when something else comes.
    fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Any JSON value, checked and passed over (a field this decoder does not read).
    fn skip(&mut self, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(Refuse);
        }
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' => {
                if self.open(b'{', b'}')? {
                    loop {
                        self.string()?;
                        self.eat(b':')?;
                        self.skip(depth + 1)?;
                        if !self.more(b'}')? {
                            break;
                        }
                    }
                }
            }
            b'[' => {
                if self.open(b'[', b']')? {
                    loop {
                        self.skip(depth + 1)?;
                        if !self.more(b']')? {
                            break;
                        }
                    }
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => {
                self.number()?;
            }
        }
        Ok(())
    }

    /// A value the contract allows for a feature or a label: a finite number, a string, a bool, null.
    fn scalar(&mut self) -> R<()> {
        match self.peek()? {
            b'"' | b't' | b'f' | b'n' => self.skip(MAX_DEPTH), // a string or a literal: nothing nested
            _ => self.float().map(drop),                       // a number, and a finite one
        }
    }
}

/// One model's shape as this decoder reads it, and the segments it has seen, each under a small
/// integer (a cache: the engine maps these to its series ids, and may clear it).
#[pyclass(module = "stream._native")]
struct Model {
    name: String,
    segment_by: Option<Vec<String>>,
    features: Vec<String>,
    feature_index: FastMap<String, usize>,
    text: Vec<bool>, // which features are text (their values are numbered in `feature_labels`)
    ids: HashMap<Vec<u8>, i64>,
    segments: Vec<Vec<(String, String)>>,
    label_ids: HashMap<String, i64>,
    labels: Vec<String>,
    feature_label_ids: HashMap<String, i64>,
    feature_labels: Vec<String>,
}

#[pymethods]
impl Model {
    /// `segment_by` None: the segment is whatever string-valued object the event sends. `text`
    /// says which `features` are text (a string or a bool, read as "true"/"false"); the others are
    /// numbers. With no features, feature values are only checked to be what the contract allows.
    #[new]
    #[pyo3(signature = (name, segment_by, features, text = None))]
    fn new(name: String, segment_by: Option<Vec<String>>, features: Vec<String>, text: Option<Vec<bool>>) -> PyResult<Self> {
        let feature_index = features.iter().enumerate().map(|(j, f)| (f.clone(), j)).collect();
        let text = text.unwrap_or_else(|| vec![false; features.len()]);
        if text.len() != features.len() {
            return Err(pyo3::exceptions::PyValueError::new_err("one text flag per feature"));
        }
        Ok(Model { name, segment_by, features, feature_index, text, ids: HashMap::new(), segments: Vec::new(),
                   label_ids: HashMap::new(), labels: Vec::new(), feature_label_ids: HashMap::new(),
                   feature_labels: Vec::new() })
    }

    /// The segment of number `i`, as (key, value) pairs (in `segment_by` order, else by key).
    fn segment(&self, i: usize) -> PyResult<Vec<(String, String)>> {
        self.segments
            .get(i)
            .cloned()
            .ok_or_else(|| pyo3::exceptions::PyIndexError::new_err("no such segment"))
    }

    fn __len__(&self) -> usize {
        self.segments.len()
    }

    /// The text predictions seen, by number (a text prediction, or the top class of a probability
    /// map, is given as its number here).
    fn labels(&self) -> Vec<String> {
        self.labels.clone()
    }

    /// The values of text features seen, by number (the feature matrix holds the number).
    fn feature_labels(&self) -> Vec<String> {
        self.feature_labels.clone()
    }

    /// Forget the segments seen (their numbers start again from 0).
    fn clear(&mut self) {
        self.ids.clear();
        self.segments.clear();
        self.label_ids.clear();
        self.labels.clear();
        self.feature_label_ids.clear();
        self.feature_labels.clear();
    }
}

impl Model {
    /// The segment object (None: absent): its number, interned on first sight.
    fn segment_of(&mut self, p: Option<&mut P>, key: &mut Vec<u8>) -> R<i64> {
        let mut pairs: Vec<(Cow<str>, Cow<str>)> = Vec::new();
        if let Some(p) = p {
            if p.open(b'{', b'}')? {
                loop {
                    let k = p.string()?;
                    p.eat(b':')?;
                    if p.peek()? != b'"' {
                        return Err(Refuse); // not a string: the general path converts or refuses
                    }
                    let v = p.string()?;
                    short(&k)?;
                    short(&v)?;
                    if pairs.len() == MAX_SEGMENT_KEYS {
                        return Err(Refuse);
                    }
                    pairs.push((k, v));
                    if !p.more(b'}')? {
                        break;
                    }
                }
            }
        }
        key.clear();
        match &self.segment_by {
            Some(by) => {
                // each key named in segment_by at most once; absent ones are "(none)"
                let mut vals: Vec<Option<&str>> = vec![None; by.len()];
                for (k, v) in &pairs {
                    let at = by.iter().position(|s| s == k).ok_or(Refuse)?;
                    if vals[at].replace(v).is_some() {
                        return Err(Refuse);
                    }
                }
                for v in &vals {
                    put(key, v.unwrap_or(NONE));
                }
                if let Some(&id) = self.ids.get(key.as_slice()) {
                    return Ok(id);
                }
                let seg = by.iter().zip(&vals).map(|(k, v)| (k.clone(), v.unwrap_or(NONE).to_owned())).collect();
                Ok(self.add(key, seg))
            }
            None => {
                pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(Refuse); // a repeated key
                }
                for (k, v) in &pairs {
                    put(key, k);
                    put(key, v);
                }
                if let Some(&id) = self.ids.get(key.as_slice()) {
                    return Ok(id);
                }
                let seg = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                Ok(self.add(key, seg))
            }
        }
    }

    fn label(&mut self, text: &str) -> R<i64> {
        intern(&mut self.label_ids, &mut self.labels, text)
    }

    fn add(&mut self, key: &[u8], seg: Vec<(String, String)>) -> i64 {
        let id = self.segments.len() as i64;
        self.ids.insert(key.to_vec(), id);
        self.segments.push(seg);
        id
    }

    /// The features object into `row` (NaN where null or absent).
    fn features_into(&mut self, p: &mut P, row: &mut [f64], seen: &mut Vec<bool>) -> R<()> {
        seen.clear();
        seen.resize(row.len(), false);
        let mut next = 0; // features usually come in the configured order: try that first
        if p.open(b'{', b'}')? {
            loop {
                let k = p.string()?;
                p.eat(b':')?;
                if self.features.is_empty() {
                    p.scalar()?;
                } else {
                    let at = if self.features.get(next).is_some_and(|f| *f == k) {
                        next
                    } else {
                        *self.feature_index.get(k.as_ref()).ok_or(Refuse)?
                    };
                    next = at + 1;
                    if seen[at] {
                        return Err(Refuse);
                    }
                    seen[at] = true;
                    if p.null()? {
                        // null: the row keeps NaN
                    } else if self.text[at] {
                        let text = match p.peek()? {
                            b'"' => p.string().and_then(|t| short(&t).map(|_| t))?,
                            b't' => p.literal(b"true").map(|_| Cow::Borrowed("true"))?,
                            b'f' => p.literal(b"false").map(|_| Cow::Borrowed("false"))?,
                            _ => return Err(Refuse), // a number for a text feature: the general path
                        };
                        row[at] = intern(&mut self.feature_label_ids, &mut self.feature_labels, &text)? as f64;
                    } else {
                        row[at] = p.float()?;
                    }
                }
                if !p.more(b'}')? {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// One model's events of the batch, column-wise.
#[derive(Default)]
struct Group<'a> {
    at: Vec<i64>,
    ts: Vec<i64>,
    pred: Vec<f64>,
    labels: Vec<i64>, // text predictions by number (a group is all numeric or all text)
    feats: Vec<f64>,
    seg: Vec<i64>,
    ids: Vec<Cow<'a, str>>,
    versions: Vec<Option<Cow<'a, str>>>,
}

const F_ID: u32 = 1;
const F_MODEL: u32 = 2;
const F_TS: u32 = 4;
const F_SEGMENT: u32 = 8;
const F_PREDICTION: u32 = 16;
const F_FEATURES: u32 = 32;
const F_VERSION: u32 = 64;
const F_LABEL: u32 = 128;

/// A string into an interning key: length, then bytes (so no two segments share a key).
fn put(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_le_bytes());
    key.extend_from_slice(s.as_bytes());
}

enum Pred<'a> {
    Number(f64),
    Label(Cow<'a, str>),
}

/// A number, a text label, or a probability map read as its top class (the first of equal ones, as
/// Python's max over the map in order). An empty map, a repeated class or a value that is not a
/// finite number is left to the general path.
fn prediction<'a>(p: &mut P<'a>) -> R<Pred<'a>> {
    match p.peek()? {
        b'"' => {
            let label = p.string()?;
            short(&label)?;
            Ok(Pred::Label(label))
        }
        b'{' => {
            if !p.open(b'{', b'}')? {
                return Err(Refuse);
            }
            // A set of the classes seen: a map of many classes costs one lookup per class, not a scan.
            let mut seen: std::collections::HashSet<Cow<str>> = std::collections::HashSet::new();
            let mut best: Option<(Cow<str>, f64)> = None;
            loop {
                let k = p.string()?;
                p.eat(b':')?;
                let x = p.float()?;
                short(&k)?;
                if seen.len() == MAX_CLASSES || !seen.insert(k.clone()) {
                    return Err(Refuse);
                }
                if best.as_ref().map_or(true, |(_, b)| x > *b) {
                    best = Some((k, x));
                }
                if !p.more(b'}')? {
                    break;
                }
            }
            Ok(Pred::Label(best.ok_or(Refuse)?.0))
        }
        _ => Ok(Pred::Number(p.float()?)),
    }
}

/// A text's number in a table, given on first sight. Free text (past `MAX_LABELS` values) is left
/// to the general path, whose sketch caps labels itself.
fn intern(ids: &mut HashMap<String, i64>, names: &mut Vec<String>, text: &str) -> R<i64> {
    if let Some(&id) = ids.get(text) {
        return Ok(id);
    }
    if names.len() >= MAX_LABELS {
        return Err(Refuse);
    }
    let id = names.len() as i64;
    ids.insert(text.to_owned(), id);
    names.push(text.to_owned());
    Ok(id)
}

/// Buffers reused from event to event.
#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    seen: Vec<bool>,
}

/// One event into its model's group. On a refusal the caller drops the whole batch, so nothing
/// written before it needs undoing.
fn event<'a>(
    raw: &'a [u8],
    at: i64,
    models: &mut [PyRefMut<Model>],
    index: &FastMap<String, usize>,
    groups: &mut [Group<'a>],
    sc: &mut Scratch,
) -> R<()> {
    let mut p = P { b: raw, i: 0 };
    let (mut id, mut model, mut ts, mut pred, mut version) = (None, None, None, None, None);
    let (mut seg, mut seg_at, mut feats_at, mut row_done) = (None, None, None, false);
    let mut seen = 0u32;
    p.open(b'{', b'}')?.then_some(()).ok_or(Refuse)?;
    loop {
        let k = p.string()?;
        p.eat(b':')?;
        let field = match k.as_ref() {
            "event_id" => F_ID,
            "model" => F_MODEL,
            "ts" => F_TS,
            "segment" => F_SEGMENT,
            "prediction" => F_PREDICTION,
            "features" => F_FEATURES,
            "model_version" => F_VERSION,
            "label" => F_LABEL,
            _ => 0,
        };
        if seen & field != 0 {
            return Err(Refuse); // a repeated field: the general path decides
        }
        seen |= field;
        match field {
            F_ID => {
                let s = p.string()?;
                let n = if s.is_ascii() { s.len() } else { s.chars().count() };
                if !(1..=256).contains(&n) {
                    return Err(Refuse);
                }
                id = Some(s);
            }
            F_MODEL => model = Some(*index.get(p.string()?.as_ref()).ok_or(Refuse)?),
            F_TS => {
                let (t, int) = p.number()?;
                let v: i64 = if int { t.parse().map_err(|_| Refuse)? } else { return Err(Refuse) };
                if !(MIN_TS..MAX_TS).contains(&v) {
                    return Err(Refuse);
                }
                ts = Some(v);
            }
            F_PREDICTION => pred = Some(prediction(&mut p)?),
            F_VERSION => {
                version = if p.null()? {
                    None
                } else {
                    let v = p.string()?;
                    short(&v)?;
                    Some(v)
                }
            }
            F_LABEL => p.scalar()?,
            F_SEGMENT | F_FEATURES => match model {
                Some(mi) if field == F_SEGMENT => seg = Some(models[mi].segment_of(Some(&mut p), &mut sc.key)?),
                Some(mi) => {
                    new_row(&models[mi], &mut groups[mi]);
                    row_done = true;
                    let row = &mut groups[mi].feats;
                    let from = row.len() - models[mi].features.len();
                    models[mi].features_into(&mut p, &mut row[from..], &mut sc.seen)?;
                }
                None => {
                    // the model field comes later: read this once it is known
                    p.ws();
                    if field == F_SEGMENT {
                        seg_at = Some(p.i);
                    } else {
                        feats_at = Some(p.i);
                    }
                    p.skip(1)?;
                }
            },
            _ => p.skip(1)?,
        }
        if !p.more(b'}')? {
            break;
        }
    }
    p.ws();
    if p.i != raw.len() {
        return Err(Refuse);
    }
    let (Some(id), Some(mi), Some(ts), Some(pred)) = (id, model, ts, pred) else {
        return Err(Refuse);
    };
    let m = &mut models[mi];
    let g = &mut groups[mi];
    let seg = match (seg, seg_at) {
        (Some(s), _) => s,
        (None, Some(i)) => m.segment_of(Some(&mut P { b: raw, i }), &mut sc.key)?,
        (None, None) => m.segment_of(None, &mut sc.key)?,
    };
    if !row_done {
        new_row(m, g);
        if let Some(i) = feats_at {
            let from = g.feats.len() - m.features.len();
            m.features_into(&mut P { b: raw, i }, &mut g.feats[from..], &mut sc.seen)?;
        }
    }
    g.at.push(at);
    g.ts.push(ts);
    match pred {
        Pred::Number(x) if g.labels.is_empty() => g.pred.push(x),
        Pred::Label(text) if g.pred.is_empty() => {
            let id = m.label(&text)?;
            g.labels.push(id)
        }
        _ => return Err(Refuse), // numbers and text in one batch: the general path says which are wrong
    }
    g.seg.push(seg);
    g.ids.push(id);
    g.versions.push(version);
    Ok(())
}

/// The event's feature row, all NaN (null) until read.
fn new_row(m: &Model, g: &mut Group) {
    g.feats.resize(g.feats.len() + m.features.len(), f64::NAN);
}

fn bytes_of<'py, T: Copy>(py: Python<'py>, v: &[T]) -> Bound<'py, PyBytes> {
    // SAFETY: T is i64 or f64 here, plain data with no padding.
    let raw = unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) };
    PyBytes::new(py, raw)
}

/// Decode a batch of message values for these models.
///
/// Returns None when any value is not one this decoder vouches for (the caller then decodes the
/// batch the general way); else one tuple per model that has events, in the order of `models`:
/// `(name, positions, ts, predictions, features, segments, event_ids, versions)`, where the
/// numeric columns are bytes of native int64/float64 (features row-major, one row per event),
/// segments are numbers from that model's table, and versions is None when no event has one.
#[pyfunction]
fn decode<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    models: Vec<PyRefMut<'py, Model>>,
    max_bytes: usize,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let mut raws: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(values.len());
    for v in values.iter() {
        match v.downcast_into::<PyBytes>() {
            Ok(b) => raws.push(b),
            _ => return Ok(None),
        }
    }
    columns(py, raws.iter().map(|b| b.as_bytes()), models, max_bytes)
}

/// As [`decode`], for whole lines of a file in one block (`\n`-separated, the last one may lack
/// it): no bytes object per line. Positions are line numbers within the block; a blank line, or
/// one ending in a CR, is not read (the caller's line reader drops those).
#[pyfunction]
fn decode_lines<'py>(
    py: Python<'py>,
    block: &Bound<'py, PyBytes>,
    models: Vec<PyRefMut<'py, Model>>,
    max_bytes: usize,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let mut b = block.as_bytes();
    if b.last() == Some(&b'\n') {
        b = &b[..b.len() - 1];
    }
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', b).chain(std::iter::once(b.len()));
    let lines = ends.map(|end| {
        let line = &b[start..end];
        start = end + 1;
        line
    });
    columns(py, lines, models, max_bytes)
}

/// The number of lines in a block of whole lines (`\n`-separated, the last one may lack it) when
/// every line is plain: not blank, not starting with whitespace, no CR anywhere; else -1.
/// (One pass; CPython's search for a two-byte needle such as `"\n "` is far slower.)
#[pyfunction]
fn plain_lines(block: &[u8]) -> i64 {
    // what bytes.strip() strips, at the start of a line: such a line may be blank
    let starts_plain = |at: usize| !matches!(block.get(at), Some(b'\n' | b' ' | b'\t' | b'\x0b' | b'\x0c'));
    if block.is_empty() {
        return 0;
    }
    if !starts_plain(0) || memchr::memchr(b'\r', block).is_some() {
        return -1;
    }
    let mut n = 0i64;
    for at in memchr::memchr_iter(b'\n', block) {
        if !starts_plain(at + 1) {
            return -1;
        }
        n += 1;
    }
    n + (block.last() != Some(&b'\n')) as i64
}

/// The offset just past the `k`-th newline of a block at or after `start` (k >= 1), or -1 when
/// it has fewer.
#[pyfunction]
#[pyo3(signature = (block, k, start = 0))]
fn line_end(block: &[u8], k: usize, start: usize) -> i64 {
    let rest = block.get(start..).unwrap_or_default();
    match k.checked_sub(1).and_then(|k| memchr::memchr_iter(b'\n', rest).nth(k)) {
        Some(at) => (start + at) as i64 + 1,
        None => -1,
    }
}

fn columns<'a, 'py>(
    py: Python<'py>,
    raws: impl Iterator<Item = &'a [u8]>,
    models: Vec<PyRefMut<'py, Model>>,
    max_bytes: usize,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let mut models = models;
    let index: FastMap<String, usize> = models.iter().enumerate().map(|(i, m)| (m.name.clone(), i)).collect();
    let mut groups: Vec<Group> = (0..models.len()).map(|_| Group::default()).collect();
    let mut sc = Scratch::default();
    for (at, raw) in raws.enumerate() {
        if raw.is_empty() || raw.len() > max_bytes || raw.last() == Some(&b'\r') {
            return Ok(None);
        }
        if event(raw, at as i64, &mut models, &index, &mut groups, &mut sc).is_err() {
            return Ok(None);
        }
    }
    let out = PyList::empty(py);
    for (m, g) in models.iter().zip(groups.iter()) {
        if g.at.is_empty() {
            continue;
        }
        let ids = PyList::new(py, g.ids.iter().map(|s| PyString::new(py, s)))?;
        let versions = if g.versions.iter().any(Option::is_some) {
            PyList::new(py, g.versions.iter().map(|v| v.as_deref()))?.into_any()
        } else {
            py.None().into_bound(py)
        };
        let row = PyTuple::new(
            py,
            [
                PyString::new(py, &m.name).into_any(),
                bytes_of(py, &g.at).into_any(),
                bytes_of(py, &g.ts).into_any(),
                if g.labels.is_empty() { bytes_of(py, &g.pred) } else { bytes_of(py, &g.labels) }.into_any(),
                bytes_of(py, &g.feats).into_any(),
                bytes_of(py, &g.seg).into_any(),
                ids.into_any(),
                versions,
                (!g.labels.is_empty()).into_pyobject(py)?.to_owned().into_any(),
            ],
        )?;
        out.append(row)?;
    }
    Ok(Some(out))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(decode_lines, m)?)?;
    m.add_function(wrap_pyfunction!(plain_lines, m)?)?;
    m.add_function(wrap_pyfunction!(line_end, m)?)?;
    Ok(())
}
