//! Packs that start with their matcher built.
//!
//! Building the matcher of a large pack (its prefilter's automata, its regular expressions)
//! is most of what a pack costs to start: about 60 ms for the whole catalog, paid by every
//! instance (each job's, each hot swap's, each start's). So a pack is made with that work
//! done: the evaluator's initialization is run once, in a sandbox of its own, and the memory
//! and globals it leaves become the pack's initial state (a Wizer snapshot: the code is not
//! changed, the initialization export is removed). Every instance then starts from there.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::{Config, Engine, Instance, Module, Store, StoreLimits, StoreLimitsBuilder, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

/// The evaluator's initialization export.
const INITIALIZE: &str = "wizer-initialize";
/// What the initialization may use. Fuel (about one per instruction) makes the bound the
/// same on every machine, so the same rules always make the same pack or the same error;
/// the catalog's 1,414 rules take about 2% of it.
const INITIALIZATION_FUEL: u64 = 20_000_000_000;
const INITIALIZATION_MEMORY: usize = 1 << 30;

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

/// `module` (the evaluator with its rules as data) with its initialization run and the
/// state it leaves as its initial state.
pub fn preinitialize(module: &[u8]) -> Result<Vec<u8>, SnapshotError> {
    preinitialize_within(module, INITIALIZATION_FUEL)
}

fn preinitialize_within(module: &[u8], fuel: u64) -> Result<Vec<u8>, SnapshotError> {
    let evaluator = |e: wasmtime::Error| SnapshotError::Evaluator(format!("{e:#}"));
    let failed = |e: wasmtime::Error| SnapshotError::Initialization(trap_text(&e, fuel));
    let mut wizer = Wizer::new();
    wizer.init_func(INITIALIZE);
    let (context, instrumented) = wizer.instrument(module).map_err(evaluator)?;
    let mut config = Config::new();
    config.consume_fuel(true);
    config.wasm_backtrace_max_frames(None);
    let engine = Engine::new(&config).map_err(evaluator)?;
    let compiled = Module::new(&engine, &instrumented).map_err(evaluator)?;
    let limits = StoreLimitsBuilder::new()
        .memory_size(INITIALIZATION_MEMORY)
        .instances(1)
        .memories(1)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(&engine, limits);
    store.limiter(|limits| limits);
    store.set_fuel(fuel).map_err(evaluator)?;
    let instance = Instance::new(&mut store, &compiled, &[]).map_err(failed)?;
    let initialize = instance.get_typed_func::<(), ()>(&mut store, INITIALIZE).map_err(evaluator)?;
    initialize.call(&mut store, ()).map_err(failed)?;
    let mut state = State { store: &mut store, instance };
    ready(wizer.snapshot(&context, &mut state)).map_err(evaluator)
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

    /// A module whose initialization runs `body`, with one page of memory and a mutable
    /// global, both exported as a compiled program's are.
    fn module(body: &[Instruction<'_>]) -> Vec<u8> {
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
        let initialized = preinitialize(&module(&body)).unwrap();
        let engine = Engine::default();
        let compiled = Module::new(&engine, &initialized).unwrap();
        assert!(compiled.get_export(INITIALIZE).is_none(), "the initialization is not exported any more");
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &compiled, &[]).unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        assert_eq!(memory.data(&store)[100..104], 0x5eed_u32.to_le_bytes());
        // The same module gives the same bytes.
        assert_eq!(initialized, preinitialize(&module(&body)).unwrap());
    }

    #[test]
    fn an_initialization_that_traps_or_does_not_end_is_an_error_that_says_so() {
        let error = preinitialize(&module(&[Instruction::Unreachable])).unwrap_err();
        assert!(matches!(error, SnapshotError::Initialization(_)), "{error}");
        assert!(error.to_string().contains("trapped"), "{error}");

        let endless = module(&[
            Instruction::Loop(wasm_encoder::BlockType::Empty),
            Instruction::Br(0),
            Instruction::End,
        ]);
        let error = preinitialize_within(&endless, 1_000_000).unwrap_err();
        assert!(error.to_string().contains("ran past its bound of 1000000 instructions"), "{error}");

        // Memory beyond the bound: a grow of 2^14 pages (1 GiB) fails and traps.
        let grows = module(&[Instruction::I32Const(1 << 14), Instruction::MemoryGrow(0), Instruction::Drop]);
        let error = preinitialize(&grows).unwrap_err();
        assert!(matches!(error, SnapshotError::Initialization(_)), "{error}");
    }

    #[test]
    fn a_module_without_the_initialization_is_refused() {
        let mut module = wasm_encoder::Module::new();
        module.section(&TypeSection::new());
        let error = preinitialize(&module.finish()).unwrap_err();
        assert!(matches!(error, SnapshotError::Evaluator(_)), "{error}");
    }
}
