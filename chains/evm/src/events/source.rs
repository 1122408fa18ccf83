//! One `[[chains.contracts]]` entry compiled for decoding, and the matching of one log against it.

use std::collections::{HashMap, HashSet};

use alloy::dyn_abi::{DecodedEvent as AbiDecoded, DynSolEvent, DynSolType, DynSolValue, Specifier};
use alloy::json_abi::{Event, JsonAbi, Param};
use alloy::primitives::{Address, B256, keccak256};

use super::json;

/// What an entry decodes the events of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTarget {
    /// The contracts at these addresses. A [`ContractSource`] keeps them sorted and without repeats, so the
    /// fingerprint and the `eth_getLogs` filters do not depend on how the config lists them.
    Addresses(Vec<Address>),
    /// Every contract whose address the factory at `address` announces as the `parameter` input (an `address`) of
    /// `event`, from the block of that announcement on.
    Factory {
        /// The factory contract.
        address: Address,
        /// Its event announcing a child (types canonicalised once in a [`ContractSource`]).
        event: Event,
        /// Name of the event's `address` input that holds the child.
        parameter: String,
    },
}

/// One `[[chains.contracts]]` entry, compiled for decoding: its selected events resolved to alloy's dynamic ABI
/// types once, their selectors and the JSON keys of their arguments precomputed, so decoding a log only looks
/// things up.
///
/// Event parameter types are canonicalised on the way in (`uint` becomes `uint256`, internal types are dropped),
/// so [`Event::signature`] of the events here is the preimage of their selector whatever the ABI file spelled.
#[derive(Debug)]
pub struct ContractSource {
    name: String,
    start_block: u64,
    /// The start block is the chain's, not set on the entry: it then stays out of the fingerprint, so editing the
    /// chain's `start_block` (which changes nothing for an indexed chain) does not re-index the entry.
    start_block_inherited: bool,
    target: SourceTarget,
    events: Vec<CompiledEvent>,
    /// Selector → positions in `events` of the non-anonymous events with it, in ABI order. One selector can have
    /// several events: ERC-20 and ERC-721 `Transfer` differ only in which parameters are indexed.
    by_selector: HashMap<B256, Vec<usize>>,
    /// Positions in `events` of the anonymous events, in ABI order.
    anonymous: Vec<usize>,
    /// Selectors of the ABI's events that were not selected: their logs are skipped, not failures.
    unselected: HashSet<B256>,
    factory: Option<Factory>,
}

impl ContractSource {
    /// Compiles an entry. `events` are the selected events (already resolved by config validation; non-empty);
    /// repeats are dropped. Fails, with a message naming the event or parameter, when a type does not parse, an
    /// event has more topics than a log can hold, there are no events or addresses, or the factory's `parameter`
    /// is not an `address` input of its event.
    pub fn new(
        name: String,
        events: Vec<Event>,
        target: SourceTarget,
        start_block: u64,
    ) -> Result<Self, String> {
        if events.is_empty() {
            return Err("no events selected".to_owned());
        }
        let mut compiled: Vec<CompiledEvent> = Vec::with_capacity(events.len());
        for event in events {
            let event = CompiledEvent::new(canonical_event(event)?)?;
            if !compiled.iter().any(|known| known.full_signature == event.full_signature) {
                compiled.push(event);
            }
        }
        let mut by_selector: HashMap<B256, Vec<usize>> = HashMap::new();
        let mut anonymous = Vec::new();
        for (i, event) in compiled.iter().enumerate() {
            if event.anonymous {
                anonymous.push(i);
            } else {
                by_selector.entry(event.selector).or_default().push(i);
            }
        }
        let (target, factory) = match target {
            SourceTarget::Addresses(mut addresses) => {
                if addresses.is_empty() {
                    return Err("no addresses".to_owned());
                }
                addresses.sort_unstable();
                addresses.dedup();
                (SourceTarget::Addresses(addresses), None)
            }
            SourceTarget::Factory { address, event, parameter } => {
                let event = canonical_event(event)?;
                let factory = Factory::new(address, &event, &parameter)?;
                (SourceTarget::Factory { address, event, parameter }, Some(factory))
            }
        };
        Ok(Self {
            name,
            start_block,
            start_block_inherited: false,
            target,
            events: compiled,
            by_selector,
            anonymous,
            unselected: HashSet::new(),
            factory,
        })
    }

    /// Tells the entry the whole ABI its events were selected from, so that logs of the ABI's other events are
    /// skipped silently instead of counted as `unknown_event` failures. Without it every log of a watched address
    /// that no selected event decodes is a failure.
    pub fn with_abi(mut self, abi: &JsonAbi) -> Self {
        for event in abi.events().filter(|event| !event.anonymous) {
            let Ok(event) = canonical_event(event.clone()) else { continue };
            let full_signature = event.full_signature();
            if !self.events.iter().any(|selected| selected.full_signature == full_signature) {
                self.unselected.insert(event.selector());
            }
        }
        self
    }

    /// The entry's name: the `contract` column of its rows.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// First block whose logs are decoded (and, for a factory, whose announcements are followed).
    /// Marks the start block as the chain's default rather than the entry's own (see [`Self::fingerprint`]).
    pub fn with_inherited_start_block(mut self) -> Self {
        self.start_block_inherited = true;
        self
    }

    pub fn start_block(&self) -> u64 {
        self.start_block
    }

    /// The addresses, or the factory, whose logs are decoded.
    pub fn target(&self) -> &SourceTarget {
        &self.target
    }

    /// Stable hex hash (keccak256) of everything that decides the entry's rows: every selected event's full
    /// signature (parameter types, names and indexed flags, the anonymous flag), the target (the sorted addresses,
    /// or the factory's address, event signature and parameter) and the start block unless it is inherited from the
    /// chain ([`Self::with_inherited_start_block`]). Any change means the stored
    /// rows were decoded differently and must be indexed anew; the entry's name and the ABI's unselected events do
    /// not count.
    pub fn fingerprint(&self) -> String {
        let mut text = String::from("chainmux contract source v1\n");
        for event in &self.events {
            text.push_str("event ");
            text.push_str(&event.full_signature);
            text.push('\n');
        }
        match &self.target {
            SourceTarget::Addresses(addresses) => {
                for address in addresses {
                    text.push_str("address ");
                    text.push_str(&alloy::hex::encode_prefixed(address));
                    text.push('\n');
                }
            }
            SourceTarget::Factory { address, event, parameter } => {
                text.push_str("factory ");
                text.push_str(&alloy::hex::encode_prefixed(address));
                text.push(' ');
                text.push_str(&event.full_signature());
                text.push(' ');
                text.push_str(parameter);
                text.push('\n');
            }
        }
        if !self.start_block_inherited {
            text.push_str(&format!("start_block {}\n", self.start_block));
        }
        alloy::hex::encode(keccak256(text.as_bytes()))
    }

    /// The selected events as the JSON text stored in `contract_sources.events`:
    /// `[{"name", "signature", "anonymous", "params": [{"name", "type", "indexed"}]}]`, in selection order.
    ///
    /// A parameter's `name` is its key in the rows' `args` (its position as a decimal string when unnamed or when
    /// an earlier parameter has the same name); `type` is the canonical ABI type, tuples written out as
    /// `(uint256,address)` / `(uint256,address)[]`, and tuple parameters also have `components`, in the same shape
    /// (with `indexed` false). An `indexed` parameter of a reference type (string, bytes, array, tuple) keeps its
    /// type here, but its value in `args` is the 32-byte hash the log holds.
    pub fn events_json(&self) -> String {
        json::events_json(self.events.iter().map(|event| (&event.abi, event.params.as_slice())))
    }

    /// topic0 of every selected non-anonymous event, without repeats, for `eth_getLogs` topic filters.
    pub fn topic0s(&self) -> Vec<B256> {
        let mut topics: Vec<B256> = Vec::with_capacity(self.by_selector.len());
        for event in self.events.iter().filter(|event| !event.anonymous) {
            if !topics.contains(&event.selector) {
                topics.push(event.selector);
            }
        }
        topics
    }

    /// Whether an anonymous event is selected: its logs have no topic0, so topic filters cannot select them.
    pub fn has_anonymous_events(&self) -> bool {
        !self.anonymous.is_empty()
    }

    /// For a factory, the selector of its event; `None` for addresses and for an anonymous factory event.
    pub fn factory_topic0(&self) -> Option<B256> {
        self.factory.as_ref().filter(|factory| !factory.event.anonymous).map(|factory| factory.event.selector)
    }

    /// The factory the entry follows, if it is a factory entry.
    pub(crate) fn factory(&self) -> Option<&Factory> {
        self.factory.as_ref()
    }

    /// Decodes one log of a watched address: non-anonymous events with the log's topic0 and topic count first,
    /// then (unless topic0 is an unselected event of the ABI) the anonymous events with its topic count, each in
    /// ABI order; the first that decodes wins.
    pub(crate) fn decode_log(&self, topics: &[B256], data: &[u8]) -> Outcome<'_> {
        let mut error: Option<String> = None;
        // A selected event with the log's selector but another topic count; its message is only built on failure.
        let mut other_count: Option<&CompiledEvent> = None;
        let topic0 = topics.first();
        if let Some(candidates) = topic0.and_then(|topic0| self.by_selector.get(topic0)) {
            for &i in candidates {
                let event = &self.events[i];
                if topics.len() != event.topics {
                    other_count.get_or_insert(event);
                    continue;
                }
                match event.decode(topics, data) {
                    Ok(decoded) => return Outcome::Decoded(event, json::args(&event.params, &decoded)),
                    Err(err) => error = Some(format!("{}: {err}", event.signature)),
                }
            }
        }
        if topic0.is_some_and(|topic0| self.unselected.contains(topic0)) {
            return Outcome::Skipped;
        }
        for &i in &self.anonymous {
            let event = &self.events[i];
            if topics.len() != event.topics {
                continue;
            }
            match event.decode(topics, data) {
                Ok(decoded) => return Outcome::Decoded(event, json::args(&event.params, &decoded)),
                Err(err) => {
                    error.get_or_insert_with(|| format!("{} (anonymous): {err}", event.signature));
                }
            }
        }
        let error = error.or_else(|| {
            other_count.map(|event| {
                format!("{} has {} topics, the log {}", event.signature, event.topics, topics.len())
            })
        });
        Outcome::Failed(match error {
            Some(error) => Failure { reason: Reason::Malformed, error },
            None => Failure {
                reason: Reason::UnknownEvent,
                error: match topic0 {
                    Some(topic0) => format!("no selected event has topic0 {topic0}"),
                    None => format!("no selected anonymous event has {} topics", topics.len()),
                },
            },
        })
    }
}

/// What one log is to one entry.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// Decoded as this event, with these arguments (JSON text).
    Decoded(&'a CompiledEvent, String),
    /// An event of the ABI that was not selected.
    Skipped,
    Failed(Failure),
}

/// Why a log of a watched address did not decode.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) reason: Reason,
    pub(crate) error: String,
}

/// The `reason` label of `chainmux_events_decode_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Neither a selected event nor an event of the ABI.
    UnknownEvent,
    /// Looked like a selected event (selector, or topic count of an anonymous one) but did not decode as one.
    Malformed,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::UnknownEvent => "unknown_event",
            Self::Malformed => "malformed",
        }
    }
}

/// The factory of a factory entry: its event, and where in it the child's address is.
#[derive(Debug)]
pub(crate) struct Factory {
    pub(crate) address: Address,
    event: CompiledEvent,
    /// The parameter is indexed (a topic) or in the data, at this position among those.
    indexed: bool,
    position: usize,
}

impl Factory {
    fn new(address: Address, event: &Event, parameter: &str) -> Result<Self, String> {
        let compiled = CompiledEvent::new(event.clone())?;
        let input = event.inputs.iter().position(|input| input.name == parameter).ok_or_else(|| {
            format!("factory parameter `{parameter}` is not an input of event `{}`", event.signature())
        })?;
        let param = &event.inputs[input];
        if param.ty != "address" {
            return Err(format!(
                "factory parameter `{parameter}` of event `{}` is a `{}`, not an `address`",
                event.signature(),
                param.selector_type()
            ));
        }
        let position = event.inputs[..input].iter().filter(|other| other.indexed == param.indexed).count();
        Ok(Self { address, event: compiled, indexed: param.indexed, position })
    }

    /// The child a log of the factory's address announces: `None` when the log is not the factory event (another
    /// selector, or for an anonymous event another topic count), `Err` when it should be but does not decode —
    /// including the event's selector with another topic count, which means the configured declaration's
    /// `indexed` flags are not the contract's: reported, never silently taken for another event.
    pub(crate) fn child(&self, topics: &[B256], data: &[u8]) -> Option<Result<Address, String>> {
        if self.event.anonymous {
            if topics.len() != self.event.topics {
                return None;
            }
        } else if topics.first() != Some(&self.event.selector) {
            return None;
        } else if topics.len() != self.event.topics {
            return Some(Err(format!(
                "{}: the log has {} topics, the configured event {}; check which inputs are `indexed`",
                self.event.signature,
                topics.len(),
                self.event.topics
            )));
        }
        let decoded = match self.event.decode(topics, data) {
            Ok(decoded) => decoded,
            Err(err) => return Some(Err(format!("{}: {err}", self.event.signature))),
        };
        let values = if self.indexed { &decoded.indexed } else { &decoded.body };
        Some(values.get(self.position).and_then(DynSolValue::as_address).ok_or_else(|| {
            format!("{}: the factory parameter did not decode as an address", self.event.signature)
        }))
    }
}

/// A selected event, ready to decode.
#[derive(Debug)]
pub(crate) struct CompiledEvent {
    /// The event as configured, types canonicalised.
    abi: Event,
    pub(crate) name: String,
    /// [`Event::signature`]: the selector's preimage, what tells overloads apart.
    pub(crate) signature: String,
    /// [`Event::full_signature`]: with names and indexed flags.
    full_signature: String,
    anonymous: bool,
    selector: B256,
    /// Topics a log of this event has.
    topics: usize,
    resolved: DynSolEvent,
    /// The inputs in ABI order: where each value is and how it is written.
    params: Vec<ParamPlan>,
}

impl CompiledEvent {
    fn new(abi: Event) -> Result<Self, String> {
        let signature = abi.signature();
        let resolved = abi.resolve().map_err(|err| format!("event `{signature}`: {err}"))?;
        let keys = keys(abi.inputs.iter().map(|input| input.name.as_str()));
        let (mut indexed, mut body) = (0, 0);
        let mut params = Vec::with_capacity(abi.inputs.len());
        for (input, key) in abi.inputs.iter().zip(keys) {
            let (position, ty) = if input.indexed {
                indexed += 1;
                (indexed - 1, resolved.indexed().get(indexed - 1))
            } else {
                body += 1;
                (body - 1, resolved.body().get(body - 1))
            };
            let ty = ty.ok_or_else(|| format!("event `{signature}`: input `{key}` did not resolve"))?;
            // An indexed reference-type value is not in the log, only its hash: one 32-byte word.
            let shape =
                if input.indexed && !is_word(ty) { Shape::Value } else { Shape::of(ty, &input.components) };
            params.push(ParamPlan { key, indexed: input.indexed, position, shape });
        }
        Ok(Self {
            name: abi.name.clone(),
            full_signature: abi.full_signature(),
            anonymous: abi.anonymous,
            selector: abi.selector(),
            topics: abi.num_topics(),
            resolved,
            params,
            signature,
            abi,
        })
    }

    /// Decodes a log whose topic count matches, strictly: alloy decodes without validating, so every value is
    /// checked to be in its type's range and the topics and data to be exactly the canonical encoding of what was
    /// decoded (no dirty padding, no non-canonical bools or addresses, no invalid UTF-8, no stray offsets or
    /// trailing bytes). A log of another event that happens to share the selector fails instead of decoding to
    /// garbage.
    fn decode(&self, topics: &[B256], data: &[u8]) -> Result<AbiDecoded, String> {
        let mut decoded =
            self.resolved.decode_log_parts(topics.iter().copied(), data).map_err(|err| err.to_string())?;
        let indexed_topics = topics.get(usize::from(!self.anonymous)..).unwrap_or_default();
        for (value, topic) in decoded.indexed.iter().zip(indexed_topics) {
            in_range(value)?;
            if value.as_word().as_ref() != Some(topic) {
                return Err(format!("topic {topic} is not a canonical {}", type_name(value)));
            }
        }
        decoded.body.iter().try_for_each(in_range)?;
        // Re-encoded as the sequence it was decoded from, then handed back without a copy.
        let body = DynSolValue::Tuple(std::mem::take(&mut decoded.body));
        let canonical = body.abi_encode_params() == data;
        if let DynSolValue::Tuple(values) = body {
            decoded.body = values;
        }
        if !canonical {
            return Err("the data is not the canonical ABI encoding of the event's parameters".to_owned());
        }
        Ok(decoded)
    }
}

/// Where one input's value is in the decoded log, and its key and shape in the JSON.
#[derive(Debug)]
pub(crate) struct ParamPlan {
    pub(crate) key: String,
    pub(crate) indexed: bool,
    /// Position among the indexed values, or among the data values.
    pub(crate) position: usize,
    pub(crate) shape: Shape,
}

/// How a value is laid out in JSON beyond what the value itself says: the keys of tuples.
#[derive(Debug)]
pub(crate) enum Shape {
    /// A single value (or the hash of an indexed reference-type value).
    Value,
    /// An array (dynamic or fixed) of elements of this shape.
    Array(Box<Shape>),
    /// A tuple: an object with these keys, in component order.
    Tuple(Vec<(String, Shape)>),
}

impl Shape {
    fn of(ty: &DynSolType, components: &[Param]) -> Self {
        match ty {
            DynSolType::Array(inner) | DynSolType::FixedArray(inner, _) => {
                Self::Array(Box::new(Self::of(inner, components)))
            }
            DynSolType::Tuple(types) => {
                let names = (0..types.len()).map(|i| components.get(i).map_or("", |c| c.name.as_str()));
                let fields = types
                    .iter()
                    .zip(keys(names))
                    .enumerate()
                    .map(|(i, (ty, key))| {
                        (key, Self::of(ty, components.get(i).map_or(&[], |c| &c.components)))
                    })
                    .collect();
                Self::Tuple(fields)
            }
            _ => Self::Value,
        }
    }
}

/// JSON keys for parameters named `names`: the name, or the position as a decimal string for an unnamed parameter
/// and for one whose name an earlier parameter already has (a JSON object cannot hold both).
pub(crate) fn keys<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() || keys.iter().any(|key| key == name) {
            // The position, made unique if an earlier parameter is literally named so (`["1", ""]`).
            let mut key = i.to_string();
            while keys.contains(&key) {
                key.insert(0, '_');
            }
            keys.push(key);
        } else {
            keys.push(name.to_owned());
        }
    }
    keys
}

/// Whether values of `ty` are a single word (and so are themselves, not hashed, when indexed).
fn is_word(ty: &DynSolType) -> bool {
    matches!(
        ty,
        DynSolType::Address
            | DynSolType::Function
            | DynSolType::Bool
            | DynSolType::FixedBytes(_)
            | DynSolType::Int(_)
            | DynSolType::Uint(_)
    )
}

/// `event` with canonical parameter types (`uint` → `uint256`, …) and no internal types: the signature is then the
/// selector's preimage, and resolution gives plain tuples, never alloy's EIP-712 structs.
fn canonical_event(mut event: Event) -> Result<Event, String> {
    let signature = event.signature();
    for input in &mut event.inputs {
        canonical_type(&mut input.ty, &mut input.components)
            .map_err(|err| format!("event `{signature}`, input `{}`: {err}", input.name))?;
        input.internal_type = None;
    }
    Ok(event)
}

fn canonical_type(ty: &mut String, components: &mut [Param]) -> Result<(), String> {
    if components.is_empty() {
        let resolved = DynSolType::parse(ty).map_err(|err| format!("type `{ty}`: {err}"))?;
        *ty = resolved.sol_type_name().into_owned();
    } else {
        if !ty.starts_with("tuple") {
            return Err(format!("type `{ty}` has components but is not a tuple"));
        }
        for component in components {
            canonical_type(&mut component.ty, &mut component.components)?;
            component.internal_type = None;
        }
    }
    Ok(())
}

/// Checks that `value` (and everything in it) fits its declared type: alloy decodes `uintN`/`intN` from a whole word
/// and `bytesN` keeps the whole word.
fn in_range(value: &DynSolValue) -> Result<(), String> {
    match value {
        DynSolValue::Uint(v, bits) if *bits < 256 && v.bit_len() > *bits => {
            Err(format!("{v} does not fit a uint{bits}"))
        }
        DynSolValue::Int(v, bits) if *bits < 256 && v.bits() as usize > *bits => {
            Err(format!("{v} does not fit an int{bits}"))
        }
        DynSolValue::FixedBytes(word, size)
            if word.get(*size..).is_some_and(|pad| pad.iter().any(|b| *b != 0)) =>
        {
            Err(format!("bytes{size} with nonzero bytes past its length"))
        }
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            items.iter().try_for_each(in_range)
        }
        _ => Ok(()),
    }
}

fn type_name(value: &DynSolValue) -> String {
    value.as_type().map_or_else(|| "value".to_owned(), |ty| ty.sol_type_name().into_owned())
}
