#include "testing/certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace shutter::testing {

struct TestCa::Impl {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  ~Impl() {
    EVP_PKEY_free(key);
    X509_free(cert);
  }
};

namespace {

absl::Status WritePem(const std::string& path, EVP_PKEY* key, X509* cert) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::InternalError("cannot write " + path);
  int ok = key != nullptr ? PEM_write_PrivateKey(f, key, nullptr, nullptr, 0,
                                                 nullptr, nullptr)
                          : PEM_write_X509(f, cert);
  std::fclose(f);
  return ok == 1 ? absl::OkStatus()
                 : absl::InternalError("PEM write failed: " + path);
}

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext != nullptr) {
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
}

// A certificate for `cn` with `key`, signed by `issuer_key` (issuer
// `issuer`, or self-signed when null).
X509* MakeCert(const std::string& cn, EVP_PKEY* key, X509* issuer,
               EVP_PKEY* issuer_key, long not_before_s, long not_after_s,
               bool ca) {
  static long serial = 1000;
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), not_before_s);
  X509_gmtime_adj(X509_getm_notAfter(cert), not_after_s);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(
      cert, issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* as_issuer = issuer != nullptr ? issuer : cert;
  if (ca) {
    AddExt(cert, as_issuer, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert, as_issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExt(cert, as_issuer, NID_basic_constraints, "critical,CA:FALSE");
    AddExt(cert, as_issuer, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    AddExt(cert, as_issuer, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  X509_sign(cert, issuer_key, EVP_sha256());
  return cert;
}

}  // namespace

TestCa::~TestCa() = default;

absl::StatusOr<std::unique_ptr<TestCa>> TestCa::Create(
    const std::string& name, const std::string& dir,
    const std::string& file_stem) {
  std::unique_ptr<TestCa> ca(new TestCa);
  ca->impl_ = std::make_unique<Impl>();
  ca->dir_ = dir;
  ca->impl_->key = EVP_EC_gen("P-256");
  if (ca->impl_->key == nullptr) return absl::InternalError("EC keygen");
  ca->impl_->cert = MakeCert(name, ca->impl_->key, nullptr, ca->impl_->key,
                             -7200, 7 * 86400, /*ca=*/true);
  ca->cert_path_ = absl::StrCat(dir, "/", file_stem, ".crt");
  absl::Status s = WritePem(ca->cert_path_, nullptr, ca->impl_->cert);
  if (!s.ok()) return s;
  return ca;
}

absl::StatusOr<CertFiles> TestCa::Issue(const std::string& common_name,
                                        const std::string& file_stem,
                                        long not_before_s,
                                        long not_after_s) const {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) return absl::InternalError("EC keygen");
  X509* cert = MakeCert(common_name, key, impl_->cert, impl_->key, not_before_s,
                        not_after_s, /*ca=*/false);
  CertFiles out{absl::StrCat(dir_, "/", file_stem, ".key"),
                absl::StrCat(dir_, "/", file_stem, ".crt")};
  absl::Status s = WritePem(out.key, key, nullptr);
  if (s.ok()) s = WritePem(out.cert, nullptr, cert);
  EVP_PKEY_free(key);
  X509_free(cert);
  if (!s.ok()) return s;
  return out;
}

}  // namespace shutter::testing
