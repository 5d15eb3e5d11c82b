"""What the tool knows about AWS before asking it: instance types, AMIs, quotas, prices."""

from dataclasses import dataclass

# Marks every resource the tool creates, so that `cleanup` finds them all and nothing else.
MANAGED_TAG = "cgan:managed"
RUN_TAG = "cgan:run"

# The owner of the AWS Deep Learning AMIs (DLAMI), so that a look-up by name cannot pick up
# someone else's image with a look-alike name.
DLAMI_OWNER = "898082745236"

# The cheapest current GPU on a supported image. The book's p3.2xlarge stays a choice.
DEFAULT_INSTANCE_TYPE = "g6.xlarge"


@dataclass(frozen=True)
class InstanceType:
    gpu: str
    on_demand_usd_per_hour: float  # us-east-1 list price, Linux; other regions differ a little
    recommended: bool  # a choice the README recommends: g5, g6 and newer


INSTANCE_TYPES = {
    "g6.xlarge": InstanceType("1x L4 24 GB", 0.8048, recommended=True),
    "g5.xlarge": InstanceType("1x A10G 24 GB", 1.006, recommended=True),
    "g6e.xlarge": InstanceType("1x L40S 48 GB", 1.861, recommended=True),
    "g4dn.xlarge": InstanceType("1x T4 16 GB", 0.526, recommended=False),
    "p3.2xlarge": InstanceType("1x V100 16 GB", 3.06, recommended=False),
}
RECOMMENDED_TYPES = [name for name, kind in INSTANCE_TYPES.items() if kind.recommended]


@dataclass(frozen=True)
class AmiFamily:
    name: str  # the DLAMI's name, without its version or date
    ssm_parameter: str  # AWS's public parameter that names the family's newest image
    login_user: str
    supported_until: str  # when the image's operating system stops getting security patches

    @property
    def name_pattern(self):
        """The describe_images name filter that matches every release of the family."""
        return f"{self.name} *"


# NVIDIA's open kernel driver, on every current DLAMI, does not drive Volta (P3) GPUs: AWS
# serves those only with this Amazon Linux 2 image, the proprietary driver 570 (CUDA 12.8 at
# most) and an operating system whose support ended on 2026-06-30. Its glibc (2.26) is too old
# for TensorFlow 2.21's wheels, which is one reason the training runs in a container.
PROPRIETARY_DRIVER_AMI = AmiFamily(
    name="Deep Learning Base Proprietary Nvidia Driver AMI (Amazon Linux 2)",
    ssm_parameter=(
        "/aws/service/deeplearning/ami/x86_64/"
        "base-proprietary-nvidia-driver-amazon-linux-2/latest/ami-id"
    ),
    login_user="ec2-user",
    supported_until="2026-06-30 (ended)",
)
# G4dn, G5, G6, G6e, P4 and P5, with the driver 580 or newer (CUDA 13).
OPEN_DRIVER_AMI = AmiFamily(
    name="Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04)",
    ssm_parameter=(
        "/aws/service/deeplearning/ami/x86_64/"
        "base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
    ),
    login_user="ubuntu",
    supported_until="2029-04-30",
)

# The pip packages of the GPU stack, all pinned, so that what runs on the instance is what
# was chosen here, not what is newest on the day of the launch. TensorFlow 2.21's `and-cuda`
# extra only asks for ranges (CUDA 12 libraries, cuDNN >=9.3,<10). The CUDA libraries are
# the 12.5 releases TensorFlow 2.21 was built with (tf.sysconfig: CUDA 12.5.1, cuDNN 9), which
# every driver of both images runs.
TENSORFLOW = "tensorflow[and-cuda]==2.21.0"
CUDA_12_5_LIBRARIES = (
    "nvidia-cublas-cu12==12.5.3.2",
    "nvidia-cuda-cupti-cu12==12.5.82",
    "nvidia-cuda-nvcc-cu12==12.5.82",
    "nvidia-cuda-nvrtc-cu12==12.5.82",
    "nvidia-cuda-runtime-cu12==12.5.82",
    "nvidia-cufft-cu12==11.2.3.61",
    "nvidia-curand-cu12==10.3.6.82",
    "nvidia-cusolver-cu12==11.6.3.83",
    "nvidia-cusparse-cu12==12.5.1.3",
    "nvidia-nccl-cu12==2.27.7",
    "nvidia-nvjitlink-cu12==12.5.82",
)


@dataclass(frozen=True)
class GpuStack:
    """TensorFlow and NVIDIA's libraries, pinned, for the GPUs of one compute capability range."""
    compute_capabilities: str
    requirements: tuple

    @property
    def cudnn(self):
        return next(pin.split("==")[1] for pin in self.requirements
                    if pin.startswith("nvidia-cudnn-cu12=="))


# cuDNN's CUDA 12 builds dropped compute capability 7.0 (the V100) from 9.11 on: a newer cuDNN
# fails at the first convolution or batch norm. 9.10.2 is the last release with Volta kernels.
VOLTA_STACK = GpuStack("7.0", (TENSORFLOW, *CUDA_12_5_LIBRARIES, "nvidia-cudnn-cu12==9.10.2.21"))
# The newest cuDNN 9 for CUDA 12 at the time of writing; it supports 7.5 (Turing) and newer.
TURING_AND_NEWER_STACK = GpuStack(
    "7.5 and newer", (TENSORFLOW, *CUDA_12_5_LIBRARIES, "nvidia-cudnn-cu12==9.28.0.42"))


@dataclass(frozen=True)
class GpuFamily:
    gpu: str
    compute_capability: str
    image: AmiFamily
    stack: GpuStack


# The instance families the tool can train on, by the prefix of their type names. TensorFlow
# 2.21's wheels hold GPU code for compute capability 6.0 and newer, so Maxwell (G3) is out;
# AMD (G4ad) and Graviton (G5g) GPUs are not CUDA x86 machines.
GPU_FAMILIES = {
    "p3": GpuFamily("V100", "7.0", PROPRIETARY_DRIVER_AMI, VOLTA_STACK),
    "p3dn": GpuFamily("V100", "7.0", PROPRIETARY_DRIVER_AMI, VOLTA_STACK),
    "g4dn": GpuFamily("T4", "7.5", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
    "g5": GpuFamily("A10G", "8.6", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
    "g6": GpuFamily("L4", "8.9", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
    "g6e": GpuFamily("L40S", "8.9", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
    "p4d": GpuFamily("A100", "8.0", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
    "p4de": GpuFamily("A100", "8.0", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
    "p5": GpuFamily("H100", "9.0", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
    "p5e": GpuFamily("H200", "9.0", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
    "p5en": GpuFamily("H200", "9.0", OPEN_DRIVER_AMI, TURING_AND_NEWER_STACK),
}


def gpu_family(instance_type):
    """The family of an instance type such as g6.xlarge, or None if the tool does not know it."""
    return GPU_FAMILIES.get(instance_type.split(".")[0])


def login_user_of_image(image_name):
    """The SSH user of an image pinned with --ami, guessed from its name."""
    return "ubuntu" if "ubuntu" in image_name.lower() else "ec2-user"


@dataclass(frozen=True)
class VcpuQuota:
    code: str
    name: str


# The EC2 quotas that limit GPU instances, counted in vCPUs, by family letter and market.
# New accounts often have 0 for P instances.
VCPU_QUOTAS = {
    ("p", "on-demand"): VcpuQuota("L-417A185B", "Running On-Demand P instances"),
    ("p", "spot"): VcpuQuota("L-7212CCBC", "All P Spot Instance Requests"),
    ("g", "on-demand"): VcpuQuota("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("g", "spot"): VcpuQuota("L-3819A6DF", "All G and VT Spot Instance Requests"),
}


def vcpu_quota(instance_type, spot):
    return VCPU_QUOTAS.get((instance_type[0], "spot" if spot else "on-demand"))


# gp3 list price in us-east-1, per GB-month, for the cost summary.
EBS_GP3_USD_PER_GB_MONTH = 0.08
ROOT_VOLUME_GB = 100  # the DLAMIs' own snapshots are 75 GB or less


# --------------------------------------------------------------------- SageMaker sweeps

# AWS's SageMaker TensorFlow 2.21 training image (Deep Learning Containers, GPU), pinned by its
# full tag: TensorFlow 2.21.0, Python 3.12, CUDA 12.9.1, cuDNN 9.5.1.17, NCCL 2.30.7, on Amazon
# Linux 2023 (aws.github.io/deep-learning-containers, "ML Training using TensorFlow DLC"). It is
# a SageMaker-only image, served from AWS's DLC account in each region listed below.
SAGEMAKER_IMAGE_TAG = "tensorflow-training:2.21.0-gpu-py312-cu129-amzn2023-sagemaker"
SAGEMAKER_IMAGE_STACK = "TensorFlow 2.21.0, CUDA 12.9.1, cuDNN 9.5.1.17"
DLC_ACCOUNT = "763104351884"
# The regions whose DLC images come from that account (a few newer regions use their own).
DLC_REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1",
               "sa-east-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1",
               "eu-north-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
               "ap-northeast-3", "ap-southeast-1", "ap-southeast-2")


def sagemaker_image(region):
    """The pinned training image's URI in a region, or None where the tool does not know it."""
    if region not in DLC_REGIONS:
        return None
    return f"{DLC_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{SAGEMAKER_IMAGE_TAG}"


# SageMaker Training's on-demand list price in us-east-1, per instance-hour; about 1.4 times
# the EC2 price of the same machine. Spot training is billed at the spot price, often 60-70 %
# less. See https://aws.amazon.com/sagemaker/pricing/ (Training, On-Demand).
SAGEMAKER_INSTANCE_TYPES = {
    "ml.g5.xlarge": InstanceType("1x A10G 24 GB", 1.408, recommended=True),
}
SAGEMAKER_DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
SAGEMAKER_PRICES_READ = "2026-12-07"
# NVIDIA froze Volta (the V100 of ml.p3) from CUDA 12.8 on, and removes it in CUDA 13; the
# project's GPU check has never run on this image's CUDA 12.9 stack there.
REFUSED_SAGEMAKER_FAMILIES = {"ml.p3": "V100 (Volta)", "ml.p3dn": "V100 (Volta)",
                              "ml.p2": "K80 (Kepler)"}
