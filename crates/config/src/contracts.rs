//! `[[chains.contracts]]`: contracts whose events are decoded with their ABI, at fixed addresses or created by a
//! factory, and the reading and checking of their ABI files.
//!
//! Deserialization gives an entry as written. [`load`](crate::load) then reads each entry's ABI file(s), checks
//! the event selection and the factory's event and parameter against them, and stores the result in the entry,
//! where the accessors ([`ContractConfig::abi_json`], [`ContractConfig::selected_events`],
//! [`ContractConfig::factory_event`]) find it. Those checks need the files, so they are not part of
//! [`Config::validate`](crate::Config::validate), which stays pure.

use std::fmt;
use std::path::Path;

use alloy::dyn_abi::Specifier;
use alloy::json_abi::{Event, JsonAbi};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ChainKind, Config, EvmAddress, Problem};

/// One `[[chains.contracts]]` entry of an EVM chain: an ABI, where the contracts are (`address` or `factory`),
/// which of their events to index and from which block.
///
/// The ABI itself is read by [`load`](crate::load) (or [`Self::load_abi`] / [`Self::resolve_with`] for an
/// entry built in code); until then the ABI accessors panic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractConfig {
    /// Name unique within the chain, same rule as chain names, e.g. `"token"`. Required. Stored with every
    /// decoded event, and used to address the entry in environment overrides.
    pub name: String,
    /// Path of the ABI file, as written: a JSON array of ABI items, or an artefact object (solc, Hardhat,
    /// Foundry) with an `"abi"` array. A relative path is relative to the config file's directory. Required.
    pub abi: String,
    /// The contract's address, or several addresses sharing the ABI. Exactly one of `address` and `factory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressList>,
    /// The events to index: each entry an event name (every overload of that name) or a signature
    /// `Name(type,...)` (exactly that event). Unset: every event of the ABI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// First block indexed for this entry. Unset: the chain's `start_block` (see [`Self::start_block_or`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_block: Option<u64>,
    /// A factory whose event announces the contracts to index (its children). Exactly one of `address` and
    /// `factory`.
    // Last, so that it serializes as a sub-table after the entry's plain values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory: Option<FactoryConfig>,
    /// The parsed ABI, the selected events and the factory event; `None` until resolved.
    #[serde(skip)]
    resolved: Option<ResolvedContract>,
}

/// `factory = { address, event, parameter, abi }` of a [`ContractConfig`]: the contract whose event announces
/// each new child, and which of the event's inputs holds the child's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactoryConfig {
    /// The factory's address. Required.
    pub address: EvmAddress,
    /// The event announcing a child: a declaration such as `ChildCreated(address indexed child, uint256 salt)`
    /// (anything containing `(`, with or without the leading `event`), or the name of an event of
    /// [`Self::abi`] if set, else of the entry's own ABI. Required.
    pub event: String,
    /// The input of [`Self::event`] that holds the child's address; its type must be `address`. Required.
    pub parameter: String,
    /// Path of the factory's ABI file, by the same rules as [`ContractConfig::abi`]; only needed to look
    /// [`Self::event`] up by name when the entry's own ABI does not have it. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<String>,
}

/// `address = "0x…"` or `address = ["0x…", …]`: one address or a list, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressList {
    /// `address = "0x…"`.
    One(EvmAddress),
    /// `address = ["0x…", …]`; validation requires it non-empty and without duplicates.
    Many(Vec<EvmAddress>),
}

impl AddressList {
    /// The addresses, in written order.
    pub fn as_slice(&self) -> &[EvmAddress] {
        match self {
            Self::One(address) => std::slice::from_ref(address),
            Self::Many(addresses) => addresses,
        }
    }
}

impl Serialize for AddressList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::One(address) => address.serialize(serializer),
            Self::Many(addresses) => addresses.serialize(serializer),
        }
    }
}

// Not `#[serde(untagged)]`: an untagged enum reports only "did not match any variant", losing the address's own
// error message and the index of the bad element.
impl<'de> Deserialize<'de> for AddressList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AddressListVisitor)
    }
}

struct AddressListVisitor;

impl<'de> Visitor<'de> for AddressListVisitor {
    type Value = AddressList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address string or a list of address strings")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<AddressList, E> {
        text.parse().map(AddressList::One).map_err(|err| E::custom(format!("{err} in {text:?}")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AddressList, A::Error> {
        let mut addresses = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(address) = seq.next_element()? {
            addresses.push(address);
        }
        Ok(AddressList::Many(addresses))
    }
}

/// What resolving an entry against its ABI file(s) produced.
#[derive(Clone, PartialEq)]
struct ResolvedContract {
    abi: JsonAbi,
    events: Vec<Event>,
    factory_event: Option<Event>,
}

// A whole ABI would drown the rest of a config's `Debug` output; the signatures say what matters.
impl fmt::Debug for ResolvedContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events: Vec<String> = self.events.iter().map(Event::signature).collect();
        f.debug_struct("ResolvedContract")
            .field("events", &events)
            .field("factory_event", &self.factory_event.as_ref().map(Event::signature))
            .finish_non_exhaustive()
    }
}

impl ContractConfig {
    /// An entry with only `name` and `abi` set and not yet resolved, for configs built in code: set
    /// `address` or `factory` (and optionally `events`, `start_block`), then call [`Self::load_abi`] or
    /// [`Self::resolve_with`].
    pub fn new(name: impl Into<String>, abi: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            abi: abi.into(),
            address: None,
            events: None,
            start_block: None,
            factory: None,
            resolved: None,
        }
    }

    /// The fixed addresses of the entry, in written order; empty for a factory entry.
    pub fn addresses(&self) -> Vec<[u8; 20]> {
        self.address
            .as_ref()
            .map_or_else(Vec::new, |list| list.as_slice().iter().map(|a| a.to_bytes()).collect())
    }

    /// The block this entry is indexed from: its own `start_block`, else `chain_start` (the chain's).
    pub fn start_block_or(&self, chain_start: u64) -> u64 {
        self.start_block.unwrap_or(chain_start)
    }

    /// Whether the ABI has been read and checked ([`load`](crate::load) does it for every entry).
    pub fn is_resolved(&self) -> bool {
        self.resolved.is_some()
    }

    /// The parsed ABI (of the contract itself, or of the children for a factory entry).
    ///
    /// # Panics
    ///
    /// If the entry is not resolved: built in code without [`Self::load_abi`] or [`Self::resolve_with`].
    pub fn abi_json(&self) -> &JsonAbi {
        &self.resolved().abi
    }

    /// The events selected by `events` (every event of the ABI when unset), each once, in the ABI's order
    /// ([`JsonAbi::events`]: by name, overloads as listed).
    ///
    /// # Panics
    ///
    /// If the entry is not resolved (see [`Self::abi_json`]).
    pub fn selected_events(&self) -> Vec<Event> {
        self.resolved().events.clone()
    }

    /// The factory's event with its input names (the declaration, or the ABI's event it names); `None` for an
    /// entry with fixed addresses.
    ///
    /// # Panics
    ///
    /// If the entry has a factory and is not resolved (see [`Self::abi_json`]).
    pub fn factory_event(&self) -> Option<&Event> {
        self.factory.as_ref()?;
        self.resolved().factory_event.as_ref()
    }

    /// Reads the entry's ABI file (and `factory.abi`), resolving relative paths against `base_dir` (the
    /// config file's directory), and checks the entry against them as [`Self::resolve_with`] does. Problem keys
    /// are relative to the entry, e.g. `abi` or `events[1]`.
    pub fn load_abi(&mut self, base_dir: &Path) -> Result<(), Vec<Problem>> {
        let abi = read_abi(base_dir, &self.abi, "abi");
        let factory_abi = self
            .factory
            .as_ref()
            .and_then(|f| f.abi.as_deref())
            .map(|path| read_abi(base_dir, path, "factory.abi"));
        self.resolve(abi, factory_abi)
    }

    /// Checks the entry against `abi` (its own ABI) and `factory_abi` (the factory's, when the entry's
    /// `factory.abi` names one; `None` looks a named factory event up in `abi`) and stores them for the
    /// accessors. Every problem is returned, keyed relative to the entry: `abi` (no events, an event alloy
    /// cannot decode with), `events[k]`, `factory.event`, `factory.parameter`.
    pub fn resolve_with(&mut self, abi: JsonAbi, factory_abi: Option<JsonAbi>) -> Result<(), Vec<Problem>> {
        self.resolve(Ok(abi), factory_abi.map(Ok))
    }

    fn resolved(&self) -> &ResolvedContract {
        match &self.resolved {
            Some(resolved) => resolved,
            None => panic!(
                "contract entry {:?} has no resolved ABI: load the config with chainmux_config::load, or call \
                 load_abi or resolve_with",
                self.name
            ),
        }
    }

    fn resolve(
        &mut self,
        abi: Result<JsonAbi, Problem>,
        factory_abi: Option<Result<JsonAbi, Problem>>,
    ) -> Result<(), Vec<Problem>> {
        self.resolved = None;
        let mut problems = Vec::new();
        let abi = match abi {
            Ok(abi) => Some(abi),
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let events = abi.as_ref().map(|abi| self.select_events(abi, &mut problems));
        let (factory_abi, factory_abi_failed) = match factory_abi {
            Some(Ok(factory_abi)) => (Some(factory_abi), false),
            Some(Err(problem)) => {
                problems.push(problem);
                (None, true)
            }
            None => (None, false),
        };
        // Where a factory event given by name is looked up: the factory's ABI when the entry names one (and
        // nowhere if it could not be read, which is already reported), else the entry's own.
        let lookup = match (&factory_abi, factory_abi_failed) {
            (Some(factory_abi), _) => Some((factory_abi, "the factory ABI")),
            (None, true) => None,
            (None, false) => abi.as_ref().map(|abi| (abi, "the ABI")),
        };
        let factory_event =
            self.factory.as_ref().and_then(|factory| resolve_factory(factory, lookup, &mut problems));
        match (abi, events) {
            (Some(abi), Some(events)) if problems.is_empty() => {
                self.resolved = Some(ResolvedContract { abi, events, factory_event });
                Ok(())
            }
            _ => Err(problems),
        }
    }

    /// The ABI's events that `events` selects (all when unset), in ABI order, each once.
    fn select_events(&self, abi: &JsonAbi, problems: &mut Vec<Problem>) -> Vec<Event> {
        let all: Vec<&Event> = abi.events().collect();
        let selected: Vec<Event> = match &self.events {
            None => {
                if all.is_empty() {
                    problems.push(Problem::new(
                        "abi",
                        "the ABI has no events; there is nothing to index (wrong file?)",
                    ));
                }
                all.into_iter().cloned().collect()
            }
            // An empty list is a validation problem (it needs no file), reported there.
            Some(wanted) => {
                let mut chosen = vec![false; all.len()];
                for (k, entry) in wanted.iter().enumerate() {
                    let matches = matching_events(&all, entry.trim());
                    if matches.is_empty() {
                        problems.push(Problem::new(format!("events[{k}]"), no_event_message(entry, &all)));
                    }
                    for index in matches {
                        chosen[index] = true;
                    }
                }
                all.into_iter().zip(chosen).filter(|(_, chosen)| *chosen).map(|(e, _)| e.clone()).collect()
            }
        };
        for event in &selected {
            if let Err(err) = event.resolve() {
                problems.push(Problem::new(
                    "abi",
                    format!("{} cannot be decoded: {}", event.full_signature(), one_line(&err)),
                ));
            }
        }
        selected
    }
}

/// Indices into `all` of the events that an `events` entry selects: every event of that name, or for a
/// signature (anything with `(`) the events with that canonical signature. A signature is compared as written
/// and, failing that, in alloy's canonical form, so `Transfer(address, address, uint)` finds
/// `Transfer(address,address,uint256)`.
fn matching_events(all: &[&Event], entry: &str) -> Vec<usize> {
    let indices = |wanted: &dyn Fn(&Event) -> bool| -> Vec<usize> {
        all.iter().enumerate().filter(|(_, e)| wanted(e)).map(|(i, _)| i).collect()
    };
    if !entry.contains('(') {
        return indices(&|e| e.name == entry);
    }
    let exact = indices(&|e| e.signature() == entry);
    if !exact.is_empty() {
        return exact;
    }
    match Event::parse(entry) {
        Ok(parsed) => {
            let canonical = parsed.signature();
            indices(&|e| e.signature() == canonical)
        }
        Err(_) => Vec::new(),
    }
}

/// `no event "Foo" in the ABI (it has: A, B)`: names for a name, signatures for a signature.
fn no_event_message(entry: &str, all: &[&Event]) -> String {
    let mut known: Vec<String> = Vec::new();
    for event in all {
        let label = if entry.contains('(') { event.signature() } else { event.name.clone() };
        if !known.contains(&label) {
            known.push(label);
        }
    }
    let has =
        if known.is_empty() { "it has none".to_owned() } else { format!("it has: {}", known.join(", ")) };
    format!("no event {entry:?} in the ABI ({has})")
}

/// The factory's event, checked: parsed from a declaration or found by name in `lookup` (the ABI and how to
/// call it in messages; `None` when it could not be read), decodable, with an `address` input named
/// `parameter`. Problems go to `problems`.
fn resolve_factory(
    factory: &FactoryConfig,
    lookup: Option<(&JsonAbi, &str)>,
    problems: &mut Vec<Problem>,
) -> Option<Event> {
    let text = factory.event.trim();
    let event = if text.contains('(') {
        match Event::parse(text) {
            // A bare signature (`ChildCreated(address,uint256)`) names no inputs and marks none indexed; the
            // ABI's event of that signature has both.
            Ok(parsed) if parsed.inputs.iter().any(|input| input.name.is_empty()) => lookup
                .and_then(|(abi, _)| abi.events().find(|e| e.signature() == parsed.signature()).cloned())
                .unwrap_or(parsed),
            Ok(parsed) => {
                // A full declaration must agree with the ABI's event of that signature, if the ABI has one: with
                // other `indexed` flags no log of the contract would ever match it.
                let known =
                    lookup.and_then(|(abi, _)| abi.events().find(|e| e.signature() == parsed.signature()));
                let flags = |e: &Event| e.inputs.iter().map(|i| i.indexed).collect::<Vec<_>>();
                if let Some(known) = known
                    .filter(|known| flags(known) != flags(&parsed) || known.anonymous != parsed.anonymous)
                {
                    problems.push(Problem::new(
                        "factory.event",
                        format!(
                            "{text:?} does not match the ABI's {}: the indexed inputs (or anonymity) differ",
                            known.full_signature()
                        ),
                    ));
                    return None;
                }
                parsed
            }
            Err(err) => {
                problems.push(Problem::new(
                    "factory.event",
                    format!("cannot parse the event declaration {text:?}: {}", one_line(&err)),
                ));
                return None;
            }
        }
    } else {
        // The ABI could not be read: already reported, and nothing to look the name up in.
        let (abi, which) = lookup?;
        match abi.event(text).map(Vec::as_slice) {
            Some([event]) => event.clone(),
            Some(overloads) if !overloads.is_empty() => {
                let declarations: Vec<String> = overloads.iter().map(Event::full_signature).collect();
                problems.push(Problem::new(
                    "factory.event",
                    format!(
                        "{text:?} is overloaded in {which} ({}); write the declaration of the one you mean",
                        declarations.join("; ")
                    ),
                ));
                return None;
            }
            _ => {
                let all: Vec<&Event> = abi.events().collect();
                let message = no_event_message(text, &all).replace("in the ABI", &format!("in {which}"));
                problems.push(Problem::new("factory.event", message));
                return None;
            }
        }
    };
    if let Err(err) = event.resolve() {
        problems.push(Problem::new(
            "factory.event",
            format!("{} cannot be decoded: {}", event.full_signature(), one_line(&err)),
        ));
        return None;
    }
    let parameter = factory.parameter.as_str();
    match event.inputs.iter().find(|input| input.name == parameter) {
        None => {
            let inputs: Vec<String> = event
                .inputs
                .iter()
                .enumerate()
                .map(|(i, input)| {
                    if input.name.is_empty() {
                        format!("unnamed {} #{i}", input.ty)
                    } else {
                        input.name.clone()
                    }
                })
                .collect();
            let has = if inputs.is_empty() {
                "it has none".to_owned()
            } else {
                format!("its inputs: {}", inputs.join(", "))
            };
            problems.push(Problem::new(
                "factory.parameter",
                format!("{} has no input {parameter:?} ({has})", event.name),
            ));
            None
        }
        Some(input) if input.ty != "address" => {
            problems.push(Problem::new(
                "factory.parameter",
                format!("{parameter:?} is a {} input of {}; it must be an address", input.ty, event.name),
            ));
            None
        }
        Some(_) => Some(event),
    }
}

/// `err` on one line, as every problem is. alloy's parser errors span several lines: a label, the input, a caret
/// under the failing character, then the expectation; they become `<expectation> at character <n>`.
fn one_line(err: &dyn fmt::Display) -> String {
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [_, _, caret, rest @ ..] if !rest.is_empty() && caret.trim_start().starts_with('^') => {
            let column = caret.chars().take_while(|c| *c == ' ').count() + 1;
            format!("{} at character {column}", rest.join(" "))
        }
        _ => lines.join(" "),
    }
}

/// Reads and parses the ABI file at `written` (relative to `base_dir` unless absolute); a problem at `key`
/// otherwise, naming the path as written.
fn read_abi(base_dir: &Path, written: &str, key: &str) -> Result<JsonAbi, Problem> {
    let text = std::fs::read_to_string(base_dir.join(written))
        .map_err(|err| Problem::new(key, format!("cannot read ABI file {written:?}: {err}")))?;
    parse_abi(&text).map_err(|message| Problem::new(key, format!("{written:?} is not a JSON ABI: {message}")))
}

/// A JSON ABI: an array of ABI items, or an object with an `"abi"` array (the artefacts of solc's standard
/// JSON output, Hardhat, Foundry and Truffle all have one).
pub(crate) fn parse_abi(text: &str) -> Result<JsonAbi, String> {
    /// The part of an artefact we need; every other key is ignored.
    #[derive(Deserialize)]
    struct Artefact {
        abi: Option<JsonAbi>,
    }

    match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str::<JsonAbi>(text).map_err(|err| err.to_string()),
        Some(b'{') => match serde_json::from_str::<Artefact>(text) {
            Ok(Artefact { abi: Some(abi) }) => Ok(abi),
            Ok(Artefact { abi: None }) => Err("the object has no \"abi\" key".to_owned()),
            Err(err) => Err(err.to_string()),
        },
        _ => {
            Err("expected a JSON array of ABI items, or an artefact object with an \"abi\" array".to_owned())
        }
    }
}

/// Resolves every contract entry of every EVM chain against its ABI file(s), relative paths against
/// `base_dir`, returning the problems with their full key paths. Entries on Solana chains are left alone:
/// validation already rejects the key there.
pub(crate) fn resolve_all(config: &mut Config, base_dir: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, chain) in config.chains.iter_mut().enumerate() {
        if chain.kind != ChainKind::Evm {
            continue;
        }
        for (j, contract) in chain.contracts.iter_mut().enumerate() {
            if let Err(found) = contract.load_abi(base_dir) {
                let key = format!("chains[{i}].contracts[{j}]");
                problems
                    .extend(found.into_iter().map(|p| Problem::new(format!("{key}.{}", p.key), p.message)));
            }
        }
    }
    problems
}
