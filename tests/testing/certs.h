#ifndef SHUTTER_TESTS_TESTING_CERTS_H_
#define SHUTTER_TESTS_TESTING_CERTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace shutter::testing {

// Paths of a PEM key and certificate written by TestCa::Issue.
struct CertFiles {
  std::string key;
  std::string cert;
};

// A throwaway certificate authority for TLS tests, made with OpenSSL's
// API (P-256 keys, SHA-256 signatures): leaf certificates with any common
// name and validity window, naming 127.0.0.1 and localhost, so that a
// test can make valid, expired, unknown and foreign credentials.
class TestCa {
 public:
  // A self-signed CA named `name`; its certificate is written to
  // `dir`/<file_stem>.crt.
  static absl::StatusOr<std::unique_ptr<TestCa>> Create(
      const std::string& name, const std::string& dir,
      const std::string& file_stem);
  ~TestCa();

  // A certificate for `common_name`, valid from now + not_before_s to now +
  // not_after_s (seconds; negative for the past), written to
  // `dir`/<file_stem>.key and .crt.
  absl::StatusOr<CertFiles> Issue(const std::string& common_name,
                                  const std::string& file_stem,
                                  long not_before_s = -3600,
                                  long not_after_s = 86400) const;

  const std::string& cert_path() const { return cert_path_; }

 private:
  TestCa() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string dir_;
  std::string cert_path_;
};

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_CERTS_H_
