#include "node/controller_term.h"

#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

absl::StatusOr<std::unique_ptr<ControllerTerm>> ControllerTerm::Open(
    std::string path) {
  auto term = std::unique_ptr<ControllerTerm>(new ControllerTerm(path));
  auto text = fs::ReadFile(path);
  if (absl::IsNotFound(text.status())) return term;
  if (!text.ok()) return text.status();
  uint64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &value)) {
    return absl::DataLossError(absl::StrCat(
        path, " does not hold a controller term (remove it to start over)"));
  }
  term->newest_ = value;
  absl::MutexLock l(&term->write_mu_);
  term->written_ = value;
  return term;
}

void ControllerTerm::Observe(uint64_t term) {
  if (term <= newest_.load()) return;  // the common case: nothing new
  absl::MutexLock l(&write_mu_);
  if (term <= newest_.load()) return;
  if (!path_.empty() && term > written_) {
    // Durable before anyone is told: a restarted node must not admit an
    // older term than one it acted on.
    absl::Status s = fs::WriteFileAtomically(path_, absl::StrCat(term, "\n"));
    if (s.ok()) {
      written_ = term;
    } else {
      spdlog::error(
          "could not record controller term {} in {}: {} (kept in memory)",
          term, path_, s.ToString());
    }
  }
  newest_ = term;
}

absl::Status ControllerTerm::Admit(uint64_t term, absl::string_view what) {
  Observe(term);
  const uint64_t newest = newest_.load();
  if (term >= newest) return absl::OkStatus();
  return WithReason(absl::FailedPreconditionError(absl::StrCat(
                        what, " refused: it comes from controller term ", term,
                        ", older than term ", newest,
                        " this node has seen (a deposed leader)")),
                    ErrorReason::kStaleController);
}

}  // namespace shutter::node
