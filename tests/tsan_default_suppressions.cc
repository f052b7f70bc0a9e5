// ThreadSanitizer suppressions built into the test binaries that run under
// TSan (LINSERVE_SANITIZE=thread), so ctest needs no TSAN_OPTIONS. Only for
// libraries Debian builds without TSan, whose synchronisation TSan cannot
// see; never for linserve's own code.
//
// absl::Status is reference counted; the decrement that frees a shared rep
// runs inside Debian's uninstrumented libabsl_status.so, so a Status created
// on one thread and dropped on another looks like a race on the delete.
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_suppressions() {
  return "race:absl::*::Status::Unref\n";
}
#endif
