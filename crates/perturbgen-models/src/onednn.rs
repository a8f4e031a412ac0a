//! bf16 × bf16 → f32 matrix products on the CPU's AMX-BF16 / AVX512-BF16 units through oneDNN
//! (Intel's deep-learning primitives library), loaded at run time.
//!
//! Why a C library through FFI: no crate offers this product. candle 0.11's CPU `matmul` on
//! BF16 tensors widens both sides to f32 and narrows the result back (its comment: "no bf16 gemm
//! kernel yet"), the `gemm` crate (0.19) has no bf16 kernel, and Debian's OpenBLAS 0.3.21
//! declares `cblas_sbgemm` but is built without it. oneDNN's matmul primitive JIT-compiles an
//! AMX kernel (`brg:avx512_core_amx_bf16`): ~3–4× its own f32 kernel at the decoder's sizes
//! (bench: `cargo run --release -p perturbgen-models --example matmul_bench`).
//!
//! Why `dlopen` rather than linking: the executables are copied to clusters, and one linked
//! against libdnnl would not start where the library is missing, even to train in f32. Here the
//! library is only looked for when a run asks for bf16 (`train.precision`), and the build needs
//! neither headers nor the library. `libdnnl.so.2` is the v2 ABI (Debian bookworm's libdnnl2,
//! 2.6.3): this module uses its C API (`dnnl_matmul_desc_init` etc., gone in v3), with the
//! descriptor structures passed as opaque buffers at least as large as the v2 headers' (696 and
//! 2800 bytes, 8-byte aligned). oneDNN threads with OpenMP (libgomp), which reads
//! `OMP_NUM_THREADS` when the library is loaded ([`crate::limit_threads`] sets it).
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::{Mutex, OnceLock};

type Status = c_int;
type Handle = *mut c_void;
const SUCCESS: Status = 0;
const DT_BF16: c_int = 2;
const DT_F32: c_int = 3;
const ENGINE_CPU: c_int = 1;
const STREAM_DEFAULT_FLAGS: c_uint = 1;
const QUERY_IMPL_INFO_STR: c_int = 8;
const ARG_SRC: c_int = 1;
const ARG_DST: c_int = 17;
const ARG_WEIGHTS: c_int = 33;
const ARG_BIAS: c_int = 41;
const MAX_NDIMS: usize = 12;
type Dims = [i64; MAX_NDIMS];

/// `dnnl_memory_desc_t` (696 bytes in 2.6), opaque.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct MemoryDesc([u8; 1024]);
/// `dnnl_matmul_desc_t` (2800 bytes in 2.6), opaque.
#[repr(C, align(8))]
struct MatmulDesc([u8; 4096]);

#[repr(C)]
struct ExecArg {
    arg: c_int,
    memory: Handle,
}

#[repr(C)]
struct Version {
    major: c_int,
    minor: c_int,
    patch: c_int,
    hash: *const c_char,
    cpu_runtime: c_uint,
    gpu_runtime: c_uint,
}

type FnMemoryDescInit = unsafe extern "C" fn(*mut MemoryDesc, c_int, *const i64, c_int, *const i64) -> Status;
type FnMatmulDescInit = unsafe extern "C" fn(*mut MatmulDesc, *const MemoryDesc, *const MemoryDesc, *const MemoryDesc, *const MemoryDesc) -> Status;
type FnPrimitiveDescCreate = unsafe extern "C" fn(*mut Handle, *const c_void, Handle, Handle, Handle) -> Status;
type FnQuery = unsafe extern "C" fn(Handle, c_int, c_int, *mut c_void) -> Status;
type FnDestroy = unsafe extern "C" fn(Handle) -> Status;
type FnCreate = unsafe extern "C" fn(*mut Handle, Handle) -> Status;
type FnMemoryCreate = unsafe extern "C" fn(*mut Handle, *const MemoryDesc, Handle, *mut c_void) -> Status;
type FnExecute = unsafe extern "C" fn(Handle, Handle, c_int, *const ExecArg) -> Status;
type FnVersion = unsafe extern "C" fn() -> *const Version;
type FnEngineCreate = unsafe extern "C" fn(*mut Handle, c_int, usize) -> Status;
type FnStreamCreate = unsafe extern "C" fn(*mut Handle, Handle, c_uint) -> Status;

/// The C functions used, resolved from the library.
struct Api {
    memory_desc_init_by_strides: FnMemoryDescInit,
    matmul_desc_init: FnMatmulDescInit,
    primitive_desc_create: FnPrimitiveDescCreate,
    primitive_desc_query: FnQuery,
    primitive_desc_destroy: FnDestroy,
    primitive_create: FnCreate,
    primitive_destroy: FnDestroy,
    memory_create: FnMemoryCreate,
    memory_destroy: FnDestroy,
    primitive_execute: FnExecute,
    stream_wait: FnDestroy,
}

/// A matmul primitive compiled for one problem (shapes, transposes, bias).
struct Plan {
    primitive: Handle,
    a: MemoryDesc,
    b: MemoryDesc,
    bias: Option<MemoryDesc>,
    c: MemoryDesc,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    m: usize,
    k: usize,
    n: usize,
    a_trans: bool,
    b_trans: bool,
    bias: bool,
}

struct State {
    engine: Handle,
    stream: Handle,
    plans: HashMap<Key, Plan>,
}

/// The loaded library: function table, version, and (under the lock) engine, stream and the
/// compiled primitives. oneDNN's handles are plain pointers to thread-safe objects; the lock
/// serialises execution on the one stream.
pub struct OneDnn {
    api: Api,
    pub version: String,
    state: Mutex<State>,
}

// SAFETY: the raw handles are only used under `state`'s lock (or are immutable function
// pointers); oneDNN engines, streams and primitives may be used from any thread.
unsafe impl Send for OneDnn {}
unsafe impl Sync for OneDnn {}

fn check(status: Status, what: &str) -> Result<(), String> {
    if status == SUCCESS {
        Ok(())
    } else {
        Err(format!("oneDNN {what} failed (status {status})"))
    }
}

/// The library, loaded once (None with the reason when it cannot be).
pub fn get() -> Result<&'static OneDnn, String> {
    static LIB: OnceLock<Result<OneDnn, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<OneDnn, String> {
    const NAME: &CStr = c"libdnnl.so.2";
    // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the signature of
    // the oneDNN 2.x C API function of that name (dnnl.h).
    unsafe {
        let lib = libc::dlopen(NAME.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if lib.is_null() {
            let err = libc::dlerror();
            let why = if err.is_null() { String::new() } else { CStr::from_ptr(err).to_string_lossy().into_owned() };
            return Err(format!("cannot load oneDNN ({why}; Debian/Ubuntu: apt-get install libdnnl2)"));
        }
        let sym = |name: &CStr| -> Result<*mut c_void, String> {
            let p = libc::dlsym(lib, name.as_ptr());
            if p.is_null() {
                Err(format!("libdnnl.so.2 lacks {}", name.to_string_lossy()))
            } else {
                Ok(p)
            }
        };
        macro_rules! f {
            ($name:literal, $ty:ty) => {
                std::mem::transmute::<*mut c_void, $ty>(sym($name)?)
            };
        }
        let version = f!(c"dnnl_version", FnVersion);
        let v = &*version();
        if v.major != 2 {
            return Err(format!("libdnnl.so.2 reports version {}.{}, expected 2.x", v.major, v.minor));
        }
        let engine_create = f!(c"dnnl_engine_create", FnEngineCreate);
        let stream_create = f!(c"dnnl_stream_create", FnStreamCreate);
        let api = Api {
            memory_desc_init_by_strides: f!(c"dnnl_memory_desc_init_by_strides", FnMemoryDescInit),
            matmul_desc_init: f!(c"dnnl_matmul_desc_init", FnMatmulDescInit),
            primitive_desc_create: f!(c"dnnl_primitive_desc_create", FnPrimitiveDescCreate),
            primitive_desc_query: f!(c"dnnl_primitive_desc_query", FnQuery),
            primitive_desc_destroy: f!(c"dnnl_primitive_desc_destroy", FnDestroy),
            primitive_create: f!(c"dnnl_primitive_create", FnCreate),
            primitive_destroy: f!(c"dnnl_primitive_destroy", FnDestroy),
            memory_create: f!(c"dnnl_memory_create", FnMemoryCreate),
            memory_destroy: f!(c"dnnl_memory_destroy", FnDestroy),
            primitive_execute: f!(c"dnnl_primitive_execute", FnExecute),
            stream_wait: f!(c"dnnl_stream_wait", FnDestroy),
        };
        let mut engine: Handle = std::ptr::null_mut();
        check(engine_create(&mut engine, ENGINE_CPU, 0), "engine creation")?;
        let mut stream: Handle = std::ptr::null_mut();
        check(stream_create(&mut stream, engine, STREAM_DEFAULT_FLAGS), "stream creation")?;
        Ok(OneDnn {
            api,
            version: format!("{}.{}.{}", v.major, v.minor, v.patch),
            state: Mutex::new(State { engine, stream, plans: HashMap::new() }),
        })
    }
}

impl OneDnn {
    fn desc(&self, rows: usize, cols: usize, transposed: bool, dtype: c_int) -> Result<MemoryDesc, String> {
        let mut dims: Dims = [0; MAX_NDIMS];
        let mut strides: Dims = [0; MAX_NDIMS];
        (dims[0], dims[1]) = (rows as i64, cols as i64);
        // Row-major [rows, cols], or the transpose of a row-major [cols, rows].
        (strides[0], strides[1]) = if transposed { (1, rows as i64) } else { (cols as i64, 1) };
        let mut md = MemoryDesc([0; 1024]);
        // SAFETY: md is a buffer at least as large as dnnl_memory_desc_t; dims/strides hold 12.
        check(unsafe { (self.api.memory_desc_init_by_strides)(&mut md, 2, dims.as_ptr(), dtype, strides.as_ptr()) }, "memory descriptor")?;
        Ok(md)
    }

    fn plan(&self, key: Key, engine: Handle) -> Result<(Plan, String), String> {
        let Key { m, k, n, a_trans, b_trans, bias } = key;
        let a = self.desc(m, k, a_trans, DT_BF16)?;
        let b = self.desc(k, n, b_trans, DT_BF16)?;
        let bias_md = if bias { Some(self.desc(1, n, false, DT_F32)?) } else { None };
        let c = self.desc(m, n, false, DT_F32)?;
        let mut op = MatmulDesc([0; 4096]);
        let api = &self.api;
        // SAFETY: descriptors initialised above; handles created by oneDNN and destroyed once.
        unsafe {
            check((api.matmul_desc_init)(&mut op, &a, &b, bias_md.as_ref().map_or(std::ptr::null(), |d| d as *const _), &c), "matmul descriptor")?;
            let mut pd: Handle = std::ptr::null_mut();
            check(
                (api.primitive_desc_create)(&mut pd, &op as *const MatmulDesc as *const c_void, std::ptr::null_mut(), engine, std::ptr::null_mut()),
                "bf16 matmul (no implementation on this CPU?)",
            )?;
            let mut info: *const c_char = std::ptr::null();
            let name = if (api.primitive_desc_query)(pd, QUERY_IMPL_INFO_STR, 0, &mut info as *mut *const c_char as *mut c_void) == SUCCESS && !info.is_null() {
                CStr::from_ptr(info).to_string_lossy().into_owned()
            } else {
                "?".into()
            };
            let mut primitive: Handle = std::ptr::null_mut();
            let made = (api.primitive_create)(&mut primitive, pd);
            (api.primitive_desc_destroy)(pd);
            check(made, "primitive creation")?;
            Ok((Plan { primitive, a, b, bias: bias_md, c }, name))
        }
    }

    /// The kernel oneDNN picks for a bf16 product of these sizes (e.g. `brg:avx512_core_amx_bf16`);
    /// an error where this CPU has no bf16 matmul.
    pub fn implementation(&self, m: usize, k: usize, n: usize) -> Result<String, String> {
        let state = self.state.lock().map_err(|_| "oneDNN lock poisoned".to_string())?;
        let (plan, name) = self.plan(Key { m, k, n, a_trans: false, b_trans: false, bias: false }, state.engine)?;
        // SAFETY: created above, never shared.
        unsafe { (self.api.primitive_destroy)(plan.primitive) };
        Ok(name)
    }

    /// c[m, n] = op(a)·op(b) (+ bias[n]) with f32 accumulation: `a` row-major [m, k], or [k, m]
    /// when `a_trans`; `b` row-major [k, n], or [n, k] when `b_trans`; `c` row-major, overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(&self, m: usize, k: usize, n: usize, a: &[u16], a_trans: bool, b: &[u16], b_trans: bool, bias: Option<&[f32]>, c: &mut [std::mem::MaybeUninit<f32>]) -> Result<(), String> {
        if a.len() != m * k || b.len() != k * n || c.len() != m * n || bias.is_some_and(|v| v.len() != n) {
            return Err(format!("bf16 gemm: buffer sizes do not match {m}×{k}·{k}×{n}"));
        }
        let key = Key { m, k, n, a_trans, b_trans, bias: bias.is_some() };
        let mut state = self.state.lock().map_err(|_| "oneDNN lock poisoned".to_string())?;
        if !state.plans.contains_key(&key) {
            let (plan, name) = self.plan(key, state.engine)?;
            log::debug!("oneDNN bf16 matmul {m}×{k}·{k}×{n} (transposed a {a_trans}, b {b_trans}): {name}");
            state.plans.insert(key, plan);
        }
        let State { engine, stream, plans } = &*state;
        let plan = &plans[&key];
        let api = &self.api;
        // SAFETY: the buffers match the descriptors' sizes (checked above) and outlive the
        // (synchronous: stream_wait) execution; oneDNN does not write a, b or bias, and writes every
        // element of c (a plain matmul, no sum post-op: c may start uninitialised).
        unsafe {
            let mut mems: Vec<(c_int, Handle)> = Vec::with_capacity(4);
            let mut bind = |arg: c_int, md: &MemoryDesc, ptr: *mut c_void| -> Result<(), String> {
                let mut mem: Handle = std::ptr::null_mut();
                check((api.memory_create)(&mut mem, md, *engine, ptr), "memory creation")?;
                mems.push((arg, mem));
                Ok(())
            };
            let bound = (|| {
                bind(ARG_SRC, &plan.a, a.as_ptr() as *mut c_void)?;
                bind(ARG_WEIGHTS, &plan.b, b.as_ptr() as *mut c_void)?;
                if let (Some(md), Some(v)) = (&plan.bias, bias) {
                    bind(ARG_BIAS, md, v.as_ptr() as *mut c_void)?;
                }
                bind(ARG_DST, &plan.c, c.as_mut_ptr() as *mut c_void)
            })();
            let result = bound.and_then(|()| {
                let args: Vec<ExecArg> = mems.iter().map(|&(arg, memory)| ExecArg { arg, memory }).collect();
                check((api.primitive_execute)(plan.primitive, *stream, args.len() as c_int, args.as_ptr()), "matmul execution")?;
                check((api.stream_wait)(*stream), "stream wait")
            });
            for (_, mem) in mems {
                (api.memory_destroy)(mem);
            }
            result
        }
    }
}
