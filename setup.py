"""ament_python set-up: the same file serves colcon in a ROS 2 workspace and pip in a virtual environment."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mtrl_robot"


def share(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    return (f"share/{PACKAGE}/{folder}", [p for p in glob(f"{folder}/{pattern}") if not p.endswith("/")])


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "*.xml"),
        share("config", "*.yaml"),
        share("config/hardware", "*.yaml"),
        share("config/nodes", "*.yaml"),
        share("config/training", "*.yaml"),
        share("sim/arms", "*.yaml"),
        share("sim/scenes", "*.yaml"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="mtrl_robot maintainers",
    maintainer_email="maintainers@mtrl-robot.org",
    description="Sim-to-real robot learning stack with ROS 2 integration",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={"console_scripts": [
        f"mtrl-robot = {PACKAGE}.cli.main:main",
        f"arm_node = {PACKAGE}.ros.arm_node:main",
        f"perception_node = {PACKAGE}.ros.perception_node:main",
        f"demo_recorder = {PACKAGE}.ros.demo_recorder:main",
        f"adaptation_node = {PACKAGE}.ros.adaptation_node:main",
        f"policy_node = {PACKAGE}.ros.policy_node:main",
        f"puck_node = {PACKAGE}.ros.puck_node:main",
        f"training_node = {PACKAGE}.ros.training_node:main",
        f"hil_suite = {PACKAGE}.ros.hil_suite:main",
    ]},
)
