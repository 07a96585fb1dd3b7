// A float32 batched matmul for XLA:CPU that runs on the BLAS numpy already loaded.
//
// Why: XLA:CPU runs a dot with a batch axis as a loop of small matmuls at a fraction of its
// 2-D rate. Attention's blocks ([Z, 256, 64] x [Z, 64, 256] and the like) ran at 40-90 GFLOP/s
// there, against 180-200 as single-threaded cblas_sgemm_batch_strided calls on slices of the
// batch, one per thread. The BLAS is found at run time (`llp_blas_load`): nothing is linked.
//
// The slices run on XLA's own intra-op thread pool, each BLAS call single-threaded: with the
// BLAS's own threads the train step was 0.75x (its threads fight XLA's for the cores). The
// calling thread claims slices too, and waits only for slices another thread already runs, so
// a busy pool (or every pool thread inside such a call) cannot deadlock it.
//
// The handler computes c[z] = op(a[z]) @ op(b[z]) for row-major a, b, c, with op a transpose
// where the attribute says so.

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };

// cblas_sgemm_batch_strided of an ILP64 BLAS (numpy's scipy-openblas64: 64-bit integers).
using BatchStrided = void (*)(int, int, int, int64_t, int64_t, int64_t, float, const float*,
                              int64_t, int64_t, const float*, int64_t, int64_t, float, float*,
                              int64_t, int64_t, int64_t);

// openblas_set_num_threads_local: returns the old count. In numpy's (pthreads) OpenBLAS the
// count is global despite the name, so it is set once for all calls in flight (`OneThread`).
using SetLocalThreads = int (*)(int);

BatchStrided g_batch = nullptr;
SetLocalThreads g_local_threads = nullptr;
std::mutex g_threads_mu;
int g_calls_in_flight = 0, g_saved_threads = 0;

// The BLAS single-threaded while any call is in flight; the count it had, restored after the
// last one (numpy's own matmuls keep their threads).
struct OneThread {
  OneThread() {
    std::lock_guard<std::mutex> lock(g_threads_mu);
    if (g_calls_in_flight++ == 0) g_saved_threads = g_local_threads(1);
  }
  ~OneThread() {
    std::lock_guard<std::mutex> lock(g_threads_mu);
    if (--g_calls_in_flight == 0) g_local_threads(g_saved_threads);
  }
};

struct Gemm {  // one cblas_sgemm_batch_strided call, less its batch
  int ta, tb;
  int64_t m, n, k, lda, ldb, sa, sb;
  const float *a, *b;
  float* c;

  void Run(int64_t z0, int64_t z1) const {  // blocks [z0, z1)
    const float *a0 = a + z0 * sa, *b0 = b + z0 * sb;
    float* c0 = c + z0 * m * n;
    g_batch(kRowMajor, ta, tb, m, n, k, 1.0f, a0, lda, sa, b0, ldb, sb, 0.0f, c0, n, m * n,
            z1 - z0);
  }
};

// Slices of the batch, claimed one at a time by whichever thread gets there first.
struct Slices {
  Gemm gemm;
  int64_t z, count;
  std::atomic<int64_t> next{0}, done{0};
  std::mutex mu;
  std::condition_variable cv;

  void Work() {
    for (int64_t i; (i = next.fetch_add(1)) < count;) {
      gemm.Run(z * i / count, z * (i + 1) / count);
      if (done.fetch_add(1) + 1 == count) {
        std::lock_guard<std::mutex> lock(mu);
        cv.notify_all();
      }
    }
  }
};

ffi::Error BatchedMatmul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                         ffi::ResultBuffer<ffi::F32> c, bool transpose_a, bool transpose_b) {
  auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  if (ad.size() != 3 || bd.size() != 3 || cd.size() != 3) {
    return ffi::Error::InvalidArgument("llp_batched_matmul: operands must be [Z, rows, cols]");
  }
  const int64_t z = ad[0], m = transpose_a ? ad[2] : ad[1], k = transpose_a ? ad[1] : ad[2];
  const int64_t n = transpose_b ? bd[1] : bd[2], kb = transpose_b ? bd[2] : bd[1];
  if (bd[0] != z || kb != k || cd[0] != z || cd[1] != m || cd[2] != n) {
    return ffi::Error::InvalidArgument("llp_batched_matmul: shapes do not match");
  }
  float* out = c->typed_data();
  if (z == 0 || m == 0 || n == 0) return ffi::Error::Success();
  if (k == 0) {
    std::memset(out, 0, sizeof(float) * z * m * n);
    return ffi::Error::Success();
  }
  if (g_batch == nullptr) {
    return ffi::Error::Internal("llp_batched_matmul: no BLAS loaded (llp_blas_load)");
  }
  Gemm gemm{transpose_a ? kTrans : kNoTrans, transpose_b ? kTrans : kNoTrans, m, n, k, ad[2],
            bd[2], ad[1] * ad[2], bd[1] * bd[2], a.typed_data(), b.typed_data(), out};
  const int64_t threads = g_local_threads != nullptr ? std::max<int64_t>(1, pool.num_threads()) : 1;
  if (threads == 1) {  // without a way to set its thread count, one call on the BLAS's threads
    gemm.Run(0, z);
    return ffi::Error::Success();
  }
  OneThread one_thread;
  auto slices = std::make_shared<Slices>();
  slices->gemm = gemm;
  slices->z = z;
  slices->count = std::min<int64_t>(z, 4 * threads);
  for (int64_t t = 1; t < threads; ++t) pool.Schedule([slices] { slices->Work(); });
  slices->Work();
  std::unique_lock<std::mutex> lock(slices->mu);
  slices->cv.wait(lock, [&] { return slices->done.load() == slices->count; });
  return ffi::Error::Success();
}

}  // namespace

extern "C" {

// Loads `symbol` (an ILP64 cblas_sgemm_batch_strided) from the shared library at `path`, and
// `local_threads` (openblas_set_num_threads_local; the batch is then sliced over XLA's
// threads) if it is there. Returns 0 on success, 1 if the library or symbol is missing.
int llp_blas_load(const char* path, const char* symbol, const char* local_threads) {
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return 1;
  void* fn = dlsym(lib, symbol);
  if (fn == nullptr) return 1;
  g_local_threads = reinterpret_cast<SetLocalThreads>(dlsym(lib, local_threads));
  g_batch = reinterpret_cast<BatchStrided>(fn);
  return 0;
}

}  // extern "C"

XLA_FFI_DEFINE_HANDLER_SYMBOL(LlpBatchedMatmulF32, BatchedMatmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b"));
