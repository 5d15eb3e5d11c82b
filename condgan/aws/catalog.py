"""What the tool knows about AWS before asking it: instance types, AMIs, quotas, prices."""

from dataclasses import dataclass

# Marks every resource the tool creates, so that `cleanup` finds them all and nothing else.
MANAGED_TAG = "cgan:managed"
RUN_TAG = "cgan:run"

# The owner of the AWS Deep Learning AMIs (DLAMI), so that a look-up by name cannot pick up
# someone else's image with a look-alike name.
DLAMI_OWNER = "898082745236"

# The book's machine: one V100.
DEFAULT_INSTANCE_TYPE = "p3.2xlarge"


@dataclass(frozen=True)
class InstanceType:
    gpu: str
    on_demand_usd_per_hour: float  # us-east-1 list price, Linux; other regions differ a little
    recommended: bool  # a choice the README recommends: g5, g6 and newer


INSTANCE_TYPES = {
    "p3.2xlarge": InstanceType("1x V100 16 GB", 3.06, recommended=False),
    "g4dn.xlarge": InstanceType("1x T4 16 GB", 0.526, recommended=False),
    "g5.xlarge": InstanceType("1x A10G 24 GB", 1.006, recommended=True),
    "g6.xlarge": InstanceType("1x L4 24 GB", 0.8048, recommended=True),
    "g6e.xlarge": InstanceType("1x L40S 48 GB", 1.861, recommended=True),
}
RECOMMENDED_TYPES = [name for name, kind in INSTANCE_TYPES.items() if kind.recommended]


@dataclass(frozen=True)
class AmiFamily:
    name: str  # the DLAMI's name, without its version or date
    ssm_parameter: str  # AWS's public parameter that names the family's newest image
    login_user: str

    @property
    def name_pattern(self):
        """The describe_images name filter that matches every release of the family."""
        return f"{self.name} *"


# NVIDIA's open kernel driver, on every current DLAMI, does not drive Volta (P3) or Maxwell
# (G3) GPUs: AWS serves those only with this Amazon Linux 2 image and the proprietary
# driver. Its glibc (2.26) is too old for TensorFlow 2.21's wheels, which is one reason the
# training runs in a container (see bootstrap.py).
PROPRIETARY_DRIVER_AMI = AmiFamily(
    name="Deep Learning Base Proprietary Nvidia Driver AMI (Amazon Linux 2)",
    ssm_parameter=(
        "/aws/service/deeplearning/ami/x86_64/"
        "base-proprietary-nvidia-driver-amazon-linux-2/latest/ami-id"
    ),
    login_user="ec2-user",
)
OPEN_DRIVER_AMI = AmiFamily(
    name="Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04)",
    ssm_parameter=(
        "/aws/service/deeplearning/ami/x86_64/"
        "base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
    ),
    login_user="ubuntu",
)
OLD_GPU_FAMILIES = ("p3", "p3dn", "g3", "g3s")


def ami_family(instance_type):
    family = instance_type.split(".")[0]
    return PROPRIETARY_DRIVER_AMI if family in OLD_GPU_FAMILIES else OPEN_DRIVER_AMI


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
