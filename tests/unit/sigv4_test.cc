#include "snapshot/sigv4.h"

#include "gtest/gtest.h"

namespace shutter::snapshot::sigv4 {
namespace {

// The GET Object example of Amazon S3's "Signature Calculations for the
// Authorization Header" page (examplebucket, bytes 0-9 of test.txt).
TEST(SigV4Test, S3GetObjectExample) {
  Request r;
  r.method = "GET";
  r.path = "/test.txt";
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Range", "bytes=0-9"},
               {"x-amz-content-sha256", HexSha256("")},
               {"x-amz-date", "20130524T000000Z"}};
  r.payload_sha256 = HexSha256("");
  EXPECT_EQ(CanonicalRequest(r),
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
            "range:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b"
            "934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\n"
            "host;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string scope = Scope("20130524T000000Z", "us-east-1", "s3");
  EXPECT_EQ(scope, "20130524/us-east-1/s3/aws4_request");
  EXPECT_EQ(StringToSign("20130524T000000Z", scope, CanonicalRequest(r)),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n"
            "20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  Credentials c{"AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  EXPECT_EQ(Authorization(r, c, "us-east-1", "s3"),
            "AWS4-HMAC-SHA256 "
            "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            "aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c"
            "6036bdb41");
}

// The PUT Object example of the same page: a '$' in the key, a Date
// header and a storage class, a signed body.
TEST(SigV4Test, S3PutObjectExample) {
  const std::string body = "Welcome to Amazon S3.";
  Request r;
  r.method = "PUT";
  r.path = "/" + UriEncode("test$file.text", false);
  EXPECT_EQ(r.path, "/test%24file.text");
  r.payload_sha256 = HexSha256(body);
  EXPECT_EQ(r.payload_sha256,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
               {"x-amz-content-sha256", r.payload_sha256}};
  Credentials c{"AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  EXPECT_NE(Authorization(r, c, "us-east-1", "s3")
                .find("Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd7"
                      "7a1b5971af0ece108bd"),
            std::string::npos)
      << CanonicalRequest(r);
}

// The ListObjects example: query parameters are encoded and sorted.
TEST(SigV4Test, S3ListObjectsExample) {
  Request r;
  r.method = "GET";
  r.path = "/";
  r.query = {{"prefix", "J"}, {"max-keys", "2"}};
  EXPECT_EQ(CanonicalQueryString(r.query), "max-keys=2&prefix=J");
  r.payload_sha256 = HexSha256("");
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-content-sha256", r.payload_sha256}};
  Credentials c{"AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  EXPECT_NE(Authorization(r, c, "us-east-1", "s3")
                .find("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db"
                      "6670ed5711ef69dc6f7"),
            std::string::npos)
      << CanonicalRequest(r);
}

// get-vanilla of the AWS Signature Version 4 test suite (service
// "service", example.amazonaws.com).
TEST(SigV4Test, TestSuiteGetVanilla) {
  Request r;
  r.method = "GET";
  r.path = "/";
  r.headers = {{"Host", "example.amazonaws.com"},
               {"X-Amz-Date", "20150830T123600Z"}};
  r.payload_sha256 = HexSha256("");
  Credentials c{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
  EXPECT_EQ(Authorization(r, c, "us-east-1", "service"),
            "AWS4-HMAC-SHA256 "
            "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1"
            "d763fbf31");
}

TEST(SigV4Test, UriEncodeKeepsUnreservedAndSlashes) {
  EXPECT_EQ(UriEncode("a-b_c.d~e/f g+h", false), "a-b_c.d~e/f%20g%2Bh");
  EXPECT_EQ(UriEncode("a/b", true), "a%2Fb");
  EXPECT_EQ(UriEncode("\xc3\xa9", true), "%C3%A9");
}

}  // namespace
}  // namespace shutter::snapshot::sigv4
