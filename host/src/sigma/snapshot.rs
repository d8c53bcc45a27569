//! Packs that start with their matcher built.
//!
//! Building the matcher of a large pack (its prefilter's automata, its regular expressions)
//! is most of what a pack costs to start: about 60 ms for the whole catalog, paid by every
//! instance (each job's, each hot swap's, each start's). So a pack is made with that work
//! done: the evaluator's initialization is run once, in a sandbox of its own, and the memory
//! and globals it leaves become the pack's initial state (a Wizer snapshot: the code is not
//! changed, the initialization export is removed). Every instance then starts from there.
//!
//! The evaluator that runs the initialization is the same for every pack: it is compiled
//! once ([`Prepared`]) and kept in the component cache, and each pack's rules are written
//! into its memory before the initialization runs.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use sha2::{Digest as _, Sha256};
use wasmtime::{Config, Engine, Instance, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, Val};
use wasmtime_wizer::{InstanceState, ModuleContext, SnapshotVal, ValType, Wizer};

use crate::runtime::ComponentCache;

/// The evaluator's initialization export.
const INITIALIZE: &str = "wizer-initialize";
/// The instrumented module's export of its memory.
const MEMORY: &str = "__wizer_memory_0";
/// What the initialization may use. Fuel (about one per instruction) makes the bound the
/// same on every machine, so the same rules always make the same pack or the same error;
/// the catalog's 1,414 rules take about 2.5% of it.
const INITIALIZATION_FUEL: u64 = 20_000_000_000;
const INITIALIZATION_MEMORY: usize = 1 << 30;
const PAGE: usize = 65536;

/// Why a pack could not be initialized.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The evaluator module is not one this code can snapshot.
    #[error("the bundled evaluator cannot be initialized ahead: {0}")]
    Evaluator(String),
    /// Building the matcher failed (a trap, its fuel or its memory ran out).
    #[error("preparing the rules' matcher failed: {0}")]
    Initialization(String),
}

/// An evaluator instrumented for a snapshot and compiled: what makes packs.
pub(super) struct Prepared {
    context: ModuleContext<'static>,
    engine: Engine,
    module: Module,
}

impl Prepared {
    /// `evaluator` (a core module exporting `wizer-initialize`) instrumented and compiled,
    /// or its compiled form taken from `cache` (and kept there for the next process).
    pub(super) fn new(
        evaluator: &'static [u8],
        cache: Option<&ComponentCache>,
    ) -> Result<Self, SnapshotError> {
        let failed = |e: wasmtime::Error| SnapshotError::Evaluator(format!("{e:#}"));
        let (context, instrumented) = wizer().instrument(evaluator).map_err(failed)?;
        let mut config = Config::new();
        config.consume_fuel(true);
        config.wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config).map_err(failed)?;
        let name = format!("sigma-evaluator-{}", hex::encode(Sha256::digest(&instrumented)));
        let module = match cache.and_then(|cache| cache.load_module(&engine, &name)) {
            Some(module) => module,
            None => {
                let module = Module::new(&engine, &instrumented).map_err(failed)?;
                if let Some(cache) = cache {
                    cache.store_module(&engine, &name, &module);
                }
                module
            }
        };
        Ok(Prepared { context, engine, module })
    }

    /// A pack: `data` (the encoded rules) placed after the evaluator's memory and the
    /// offset and length written after its only `marker`, its initialization run, and the
    /// state it leaves as its initial state.
    pub(super) fn initialized(&self, marker: &[u8], data: &[u8]) -> Result<Vec<u8>, SnapshotError> {
        self.run(INITIALIZATION_FUEL, Some((marker, data)))
    }

    /// The initialization run with `fuel`, after `data` is placed (see [`Self::initialized`]).
    fn run(&self, fuel: u64, data: Option<(&[u8], &[u8])>) -> Result<Vec<u8>, SnapshotError> {
        let failed = |e: wasmtime::Error| SnapshotError::Initialization(trap_text(&e, fuel));
        let evaluator = |e: wasmtime::Error| SnapshotError::Evaluator(format!("{e:#}"));
        let limits = StoreLimitsBuilder::new()
            .memory_size(INITIALIZATION_MEMORY)
            .instances(1)
            .memories(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, limits);
        store.limiter(|limits| limits);
        store.set_fuel(fuel).map_err(evaluator)?;
        let instance = Instance::new(&mut store, &self.module, &[]).map_err(failed)?;
        if let Some((marker, data)) = data {
            let memory = instance
                .get_memory(&mut store, MEMORY)
                .ok_or_else(|| SnapshotError::Evaluator("no memory to initialize".to_owned()))?;
            place(&mut store, memory, marker, data)?;
        }
        let initialize = instance.get_typed_func::<(), ()>(&mut store, INITIALIZE).map_err(evaluator)?;
        initialize.call(&mut store, ()).map_err(failed)?;
        let mut state = State { store: &mut store, instance };
        ready(wizer().snapshot(&self.context, &mut state)).map_err(evaluator)
    }
}

/// `data` placed: `memory` grown by the pages it takes and `data` written there, and its
/// offset and length written after the only `marker` in the memory before it.
fn place(
    store: &mut Store<StoreLimits>,
    memory: Memory,
    marker: &[u8],
    data: &[u8],
) -> Result<(), SnapshotError> {
    let evaluator = |reason: &str| SnapshotError::Evaluator(reason.to_owned());
    let length = u32::try_from(data.len()).map_err(|_| evaluator("rules over 4 GiB"))?;
    let mut found = memchr::memmem::find_iter(memory.data(&*store), marker);
    let at = match (found.next(), found.next()) {
        (Some(at), None) => at,
        (None, _) => return Err(evaluator("no PACK_DATA marker in its memory")),
        (Some(_), Some(_)) => return Err(evaluator("the PACK_DATA marker appears twice")),
    };
    let offset = memory.data_size(&*store);
    let offset32 = u32::try_from(offset).map_err(|_| evaluator("a memory over 4 GiB"))?;
    memory
        .grow(&mut *store, data.len().div_ceil(PAGE) as u64)
        .map_err(|e| SnapshotError::Initialization(format!("the rules do not fit its memory: {e:#}")))?;
    let image = memory.data_mut(&mut *store);
    image[offset..offset + data.len()].copy_from_slice(data);
    image[at + 8..at + 12].copy_from_slice(&offset32.to_le_bytes());
    image[at + 12..at + 16].copy_from_slice(&length.to_le_bytes());
    Ok(())
}

fn wizer() -> Wizer {
    let mut wizer = Wizer::new();
    wizer.init_func(INITIALIZE);
    wizer
}

/// A trap's kind and the guest's message, without a backtrace.
fn trap_text(error: &wasmtime::Error, fuel: u64) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => format!("it ran past its bound of {fuel} instructions"),
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "it trapped (a panic in the evaluator: a rule it cannot build)".to_owned()
        }
        _ => format!("{error:#}"),
    }
}

/// The value of a future that never waits: the snapshot's, which reads a store in memory.
fn ready<T>(future: impl Future<Output = T>) -> T {
    match pin!(future).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("the snapshot reads a store in memory and never waits"),
    }
}

/// The initialized instance, as the snapshot reads it.
struct State<'a> {
    store: &'a mut Store<StoreLimits>,
    instance: Instance,
}

impl InstanceState for State<'_> {
    fn global_get(&mut self, name: &str, _: ValType) -> impl Future<Output = SnapshotVal> + Send {
        // The instrumented module exports every global it snapshots, by these names.
        let global = self.instance.get_global(&mut *self.store, name).expect("an instrumented global");
        let value = match global.get(&mut *self.store) {
            Val::I32(x) => SnapshotVal::I32(x),
            Val::I64(x) => SnapshotVal::I64(x),
            Val::F32(x) => SnapshotVal::F32(x),
            Val::F64(x) => SnapshotVal::F64(x),
            Val::V128(x) => SnapshotVal::V128(x.as_u128()),
            // Wizer refuses modules with mutable reference globals before they run.
            _ => unreachable!("a snapshotted global of a reference type"),
        };
        std::future::ready(value)
    }

    fn memory_contents(
        &mut self,
        name: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) -> impl Future<Output = ()> + Send {
        let memory = self.instance.get_memory(&mut *self.store, name).expect("an instrumented memory");
        contents(memory.data(&*self.store));
        std::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use wasm_encoder::{
        CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection, GlobalSection,
        GlobalType, Instruction, MemArg, MemArgTarget, MemorySection, MemoryType, TypeSection, ValType,
    };

    use super::*;

    /// `module` prepared without a cache.
    fn prepared(module: Vec<u8>) -> Result<Prepared, SnapshotError> {
        Prepared::new(Box::leak(module.into_boxed_slice()), None)
    }

    /// `module`'s initialization run, with `fuel`, and nothing placed first.
    fn initialized(module: Vec<u8>, fuel: u64) -> Result<Vec<u8>, SnapshotError> {
        prepared(module)?.run(fuel, None)
    }

    /// A module whose initialization runs `body`, with one page of memory and a mutable
    /// global, both exported as a compiled program's are.
    fn module(body: &[Instruction<'_>]) -> Vec<u8> {
        module_with_data(body, &[])
    }

    /// [`module`], with `data` at address 16 of its memory.
    fn module_with_data(body: &[Instruction<'_>], data: &[u8]) -> Vec<u8> {
        let mut module = wasm_encoder::Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut functions = FunctionSection::new();
        functions.function(0);
        module.section(&functions);
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&memories);
        let mut globals = GlobalSection::new();
        globals.global(
            GlobalType { val_type: ValType::I32, mutable: true, shared: false },
            &ConstExpr::i32_const(0),
        );
        module.section(&globals);
        let mut exports = ExportSection::new();
        exports.export(INITIALIZE, ExportKind::Func, 0);
        exports.export("memory", ExportKind::Memory, 0);
        module.section(&exports);
        let mut code = CodeSection::new();
        let mut function = Function::new([]);
        for instruction in body {
            function.instruction(instruction);
        }
        function.instruction(&Instruction::End);
        code.function(&function);
        module.section(&code);
        if !data.is_empty() {
            let mut segments = wasm_encoder::DataSection::new();
            segments.active(0, &ConstExpr::i32_const(16), data.iter().copied());
            module.section(&segments);
        }
        module.finish()
    }

    #[test]
    fn the_state_the_initialization_leaves_is_the_modules_initial_state() {
        let write = MemArg { offset: 0, align: 2, target: MemArgTarget::Memory(0), ordering: None };
        let body = [
            Instruction::I32Const(100),
            Instruction::I32Const(0x5eed),
            Instruction::I32Store(write),
            Instruction::I32Const(7),
            Instruction::GlobalSet(0),
        ];
        let once = initialized(module(&body), INITIALIZATION_FUEL).unwrap();
        let engine = Engine::default();
        let compiled = Module::new(&engine, &once).unwrap();
        assert!(compiled.get_export(INITIALIZE).is_none(), "the initialization is not exported any more");
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &compiled, &[]).unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        assert_eq!(memory.data(&store)[100..104], 0x5eed_u32.to_le_bytes());
        // The same module gives the same bytes.
        assert_eq!(once, initialized(module(&body), INITIALIZATION_FUEL).unwrap());
    }

    #[test]
    fn an_initialization_that_traps_or_does_not_end_is_an_error_that_says_so() {
        let error = initialized(module(&[Instruction::Unreachable]), INITIALIZATION_FUEL).unwrap_err();
        assert!(matches!(error, SnapshotError::Initialization(_)), "{error}");
        assert!(error.to_string().contains("trapped"), "{error}");

        let endless = module(&[
            Instruction::Loop(wasm_encoder::BlockType::Empty),
            Instruction::Br(0),
            Instruction::End,
        ]);
        let error = initialized(endless, 1_000_000).unwrap_err();
        assert!(error.to_string().contains("ran past its bound of 1000000 instructions"), "{error}");

        // Memory beyond the bound: a grow of 2^14 pages (1 GiB) fails and traps.
        let grows = module(&[Instruction::I32Const(1 << 14), Instruction::MemoryGrow(0), Instruction::Drop]);
        let error = initialized(grows, INITIALIZATION_FUEL).unwrap_err();
        assert!(matches!(error, SnapshotError::Initialization(_)), "{error}");
    }

    #[test]
    fn the_rules_are_placed_past_the_memory_and_the_marker_points_at_them() {
        let marker = b"\xd1rhpack\x01\xff\xff\xff\xff\xff\xff\xff\xff";
        let with = |times: usize| prepared(module_with_data(&[], &marker.repeat(times))).unwrap();
        let pack = with(1).initialized(marker, b"rules").unwrap();
        let engine = Engine::default();
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &Module::new(&engine, &pack).unwrap(), &[]).unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap().data(&store).to_vec();
        assert_eq!(memory.len(), 2 * PAGE, "one page grown for the rules");
        assert_eq!(&memory[PAGE..PAGE + 5], b"rules");
        assert_eq!(&memory[16..24], &marker[..8]);
        assert_eq!(memory[24..28], (PAGE as u32).to_le_bytes(), "the offset");
        assert_eq!(memory[28..32], 5u32.to_le_bytes(), "the length");

        for (times, expected) in [(0, "no PACK_DATA marker"), (2, "appears twice")] {
            let error = with(times).initialized(marker, b"rules").unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn a_module_without_the_initialization_is_refused() {
        let mut module = wasm_encoder::Module::new();
        module.section(&TypeSection::new());
        let error = initialized(module.finish(), INITIALIZATION_FUEL).unwrap_err();
        assert!(matches!(error, SnapshotError::Evaluator(_)), "{error}");
    }
}
