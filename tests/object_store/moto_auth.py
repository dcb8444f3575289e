"""Makes a moto server check credentials: started with INITIAL_NO_AUTH_ACTION_COUNT=4, it
accepts these four unsigned actions (an IAM user with every S3 right, its key pair, and the
test bucket) and checks the signature of every request after them.

Usage: python moto_auth.py ENDPOINT BUCKET; prints the key id and the secret, one a line.
boto3 comes with moto[server]."""
import json
import sys

import boto3

endpoint, bucket = sys.argv[1], sys.argv[2]
anyone = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **anyone)
iam.create_user(UserName="ckpt")
key = iam.create_access_key(UserName="ckpt")["AccessKey"]
iam.put_user_policy(UserName="ckpt", PolicyName="s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}))
boto3.client("s3", **anyone).create_bucket(Bucket=bucket)
print(key["AccessKeyId"])
print(key["SecretAccessKey"])
